"""autosteer_interp: AutoSteer (Wu et al., EMNLP 2025) for the nnsight / TransformerLens ecosystem."""
