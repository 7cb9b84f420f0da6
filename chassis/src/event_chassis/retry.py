"""When to retry a failing message, and when to give up and dead-letter it.

A message that can never succeed (not valid JSON, the wrong schema, too large,
a header that is not UTF-8) is dead-lettered at once. Any other handler error
(a timeout, a dependency briefly down) is retried with capped exponential
backoff, then dead-lettered. A service changes the decision by passing its own
`RetryPolicy` (or a subclass overriding `delay`) to `Service.consume`, or by
raising `PoisonMessageError` from its handler.
"""

from dataclasses import dataclass

from pydantic import ValidationError


class PoisonMessageError(Exception):
    """The message can never be processed; retrying would not help."""


@dataclass(frozen=True)
class RetryPolicy:
    """Retry with exponential backoff, except for errors that are `permanent`."""

    max_retries: int = 3
    backoff_seconds: float = 0.2
    max_backoff_seconds: float = 5.0
    permanent: tuple[type[BaseException], ...] = (ValidationError, PoisonMessageError)

    def delay(self, error: Exception, attempt: int) -> float | None:
        """Seconds to wait before trying again after `attempt` failed; None to dead-letter."""
        if isinstance(error, self.permanent) or attempt > self.max_retries:
            return None
        return min(self.backoff_seconds * 2.0 ** (attempt - 1), self.max_backoff_seconds)
