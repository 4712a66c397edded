"""`python -m rlvr ...`, the form torchrun launches (`torchrun --nproc_per_node N -m rlvr train ...`)."""

from rlvr.cli import main

raise SystemExit(main())
