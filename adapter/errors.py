"""Baton's exceptions, grouped by what the caller should do next."""


class BatonError(Exception):
    """Root of every error Baton raises on purpose."""


class ConfigurationError(BatonError):
    """A setting is missing or wrong; raised at start-up and names the variable."""


class PolicyError(ConfigurationError):
    """The policy file does not validate; `errors` maps key paths to messages."""

    def __init__(self, errors: dict[str, list[str]], source: str = "policy"):
        self.errors = errors
        lines = [f"{path}: {'; '.join(msgs)}" for path, msgs in sorted(errors.items())]
        super().__init__(f"{source} is invalid:\n  " + "\n  ".join(lines))


class CrmError(BatonError):
    """A CRM call failed."""

    def __init__(self, message: str, *, status: int | None = None, endpoint: str | None = None):
        self.status = status
        self.endpoint = endpoint
        super().__init__(message)


class RetriableCrmError(CrmError):
    """Rate limited, timed out or a 5xx: the work is retried with backoff."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs):
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class FatalCrmError(CrmError):
    """The CRM refused the request for good (4xx other than 429); kept for `baton retry-failed`."""


class UnknownConnector(BatonError):
    """No connector is registered under that name."""


class WebhookVerificationError(BatonError):
    """A webhook failed authentication (bad signature, stale timestamp, wrong org): answer 401/403."""


class MalformedWebhook(BatonError):
    """A webhook authenticated but its body cannot be understood: answer 400."""
