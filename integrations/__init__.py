"""Framework integrations: `posthog_llm.integrations.langchain`, `.llama_index`, `.openai`.

Each one imports its framework lazily and says which extra to install when it is missing.
"""

from __future__ import annotations

__all__: list[str] = []
