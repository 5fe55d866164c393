"""Training score models with accelerate: command line (`cli`), loop (`loop`), checkpoints (`checkpoints`) and the
training data built from `ncsn_pipeline.data` (`data`)."""
