"""Multi-GPU and multi-node training: FSDP1, FSDP2 and DeepSpeed ZeRO strategies and their checks."""
