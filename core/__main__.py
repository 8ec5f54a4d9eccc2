"""`python -m posthog_llm ...` is the same as the `posthog-llm` command."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
