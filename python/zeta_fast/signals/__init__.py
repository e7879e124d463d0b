"""Quality signals the router collects itself (see docs/signals.md): a
user's regenerations and continued conversations, a judge model's grades
of sampled answers, and shadow comparisons with the strongest model. Structural checks live in
``zeta_fast.answer_checks``; all of them end as ``RouterCore.feedback``
or ``RouterCore.check_answer`` calls, attributed to their source."""

from zeta_fast.signals.judge import Judge, parse_verdict
from zeta_fast.signals.regeneration import Conversations, ConversationVerdict
from zeta_fast.signals.shadow import Shadow, agree

__all__ = ["ConversationVerdict", "Conversations", "Judge", "Shadow", "agree", "parse_verdict"]
