"""`python -m bltx.checkpoint export CKPT OUT.pt [--dtype bfloat16]` (bltx/checkpoint/manager.py main)."""

from bltx.checkpoint.manager import main

raise SystemExit(main())
