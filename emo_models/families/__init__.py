"""Model families whose public weights run through our model: each is a config of EMOConfig options,
its inference constants and how its release is recognised, in one small module (hallo.py)."""
