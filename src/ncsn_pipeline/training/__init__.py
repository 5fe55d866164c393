"""Training score models with accelerate: command line (`cli`), loop (`loop`), checkpoints (`checkpoints`) and
data (`data`, `image_files`, `toys`)."""
