"""Model families whose public weights run through our model: each is a config of EMOConfig options,
sampling presets and input rules in one small module (echomimic.py)."""
