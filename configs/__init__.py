"""Model aliases and presets (TOML), read by qflash_eval.config as package data."""
