"""recipe-kit: one YAML recipe from raw data to an evaluated post-trained model."""

__version__ = "0.1.0"
