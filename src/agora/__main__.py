"""`python -m agora ...` is the `agora` command."""

from agora.cli.main import main

raise SystemExit(main())
