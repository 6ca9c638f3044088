"""The doctor: checks of a database against the models, and safe repairs."""
