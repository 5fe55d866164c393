"""Every console script's ``main``, with its argument parser: ``ncsn-sample`` (`sample`), ``ncsn-train`` (`train`),
``ncsn-train-classifier`` (`train_classifier`), ``ncsn-eval`` (`evaluate`), ``ncsn-digits-eval`` (`digits_eval`),
``ncsn-convert`` (`convert`), ``ncsn-export`` (`export`) and ``ncsn-push`` (`push`).

The work itself lives in the applications (`ncsn_pipeline.training`, `ncsn_pipeline.evaluation` ...); the argument
types they share are in `ncsn_pipeline.arguments`, below all of them.
"""
