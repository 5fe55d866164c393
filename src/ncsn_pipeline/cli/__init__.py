"""Command-line front ends: ``ncsn-sample`` (`sample`), ``ncsn-push`` (`push`), ``ncsn-export`` (`export`).

Training (``ncsn-train``) and evaluation (``ncsn-digits-eval``) keep their command lines in their own
subpackages; all of them share the argument types of `arguments`.
"""
