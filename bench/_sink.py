"""The benchmarks' loopback sink: the package's PostHog receiver, counting instead of keeping."""

from __future__ import annotations

from posthog_llm.local.posthog_sink import PostHogSink


class Sink:
    """`Sink(count=True).start()`; `.url`; `.events` (count); `.requests`; `.bytes`; `.close()`.

    With `delay` seconds each request is answered late (a slow endpoint).
    """

    def __init__(self, *, count: bool = False, delay: float = 0.0) -> None:
        self.count = count
        self.delay = delay
        self.url = ""
        self._sink: PostHogSink | None = None

    def start(self) -> Sink:
        self._sink = PostHogSink(keep=False, count=self.count, delay=self.delay)
        self.url = self._sink.url
        return self

    @property
    def events(self) -> int:
        return self._sink.event_count if self._sink is not None else 0

    @property
    def requests(self) -> int:
        return self._sink.request_count if self._sink is not None else 0

    @property
    def bytes(self) -> int:
        return self._sink.bytes if self._sink is not None else 0

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()
