"""localstripe (a third-party fake Stripe server) as a real separate process for tests."""
from __future__ import annotations

from service.demo.localstripe import provision_localstripe, start_localstripe


class LocalStripe:
    def __init__(self, log_path: str) -> None:
        self.proc, self.url = start_localstripe(log_path=log_path)

    def provision(self, webhook_url: str) -> dict[str, str]:
        return provision_localstripe(self.url, webhook_url)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
