"""When to retry a failing message, when to wait for a dependency, and when to give up.

- A message that can never succeed (not valid JSON, the wrong schema, too large, a
  header that is not UTF-8) is dead-lettered at once.
- A dependency that is down (the handler raises `DependencyUnavailableError`,
  `ConnectionError` or `TimeoutError`) is not the message's fault: after the retries in
  place, the message's partition is paused and tried again later (see `partitions`),
  for as long as the outage lasts. Nothing is dead-lettered for it, and the consumer's
  lag shows the wait.
- Any other handler error is retried in place with capped exponential backoff, then
  dead-lettered.

A service changes the decision by passing its own `RetryPolicy` (or a subclass
overriding `delay` or `waits_for_dependency`) to `Service.consume`, or by raising
`PoisonMessageError` or `DependencyUnavailableError` from its handler.
"""

from dataclasses import dataclass

from pydantic import ValidationError


class PoisonMessageError(Exception):
    """The message can never be processed; retrying would not help."""


class DependencyUnavailableError(Exception):
    """Something the handler needs is down: wait for it rather than dead-letter the message."""


@dataclass(frozen=True)
class RetryPolicy:
    """Retry with exponential backoff, except for errors that are `permanent`."""

    max_retries: int = 3
    backoff_seconds: float = 0.2
    max_backoff_seconds: float = 5.0
    permanent: tuple[type[BaseException], ...] = (ValidationError, PoisonMessageError)
    unavailable: tuple[type[BaseException], ...] = (
        DependencyUnavailableError,
        ConnectionError,
        TimeoutError,
    )

    def delay(self, error: Exception, attempt: int) -> float | None:
        """Seconds to wait before trying again after `attempt` failed; None to stop trying."""
        if isinstance(error, self.permanent) or attempt > self.max_retries:
            return None
        return min(self.backoff_seconds * 2.0 ** (attempt - 1), self.max_backoff_seconds)

    def waits_for_dependency(self, error: Exception) -> bool:
        """Whether `error` means a dependency is down: hold the partition, never dead-letter."""
        return isinstance(error, self.unavailable) and not isinstance(error, self.permanent)
