"""Writes the demo's prompt sample (``python/zeta_fast/demo/prompts.jsonl``)
and its licence notices from the shared task-type data set.

Only permissively licensed sources are taken (MIT: HumanEval, GSM8K, MMLU;
Apache-2.0: MT-Bench), 20 prompts per task type chosen by the lowest
SHA-256 of the prompt (so the choice is stable), plus 20 MMLU questions as
embedding inputs. Run: ``python scripts/make_demo_prompts.py ../shared/data``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from pathlib import Path

PICKS = {
    "code": [("humaneval", 12), ("mt_bench", 8)],
    "reasoning": [("gsm8k", 12), ("mt_bench", 8)],
    "knowledge": [("mmlu", 20)],
    "chat": [("mt_bench", 20)],
}
MAX_CHARS = 1200
OUT = Path(__file__).resolve().parent.parent / "python" / "zeta_fast" / "demo"


def main(data: Path) -> None:
    with (data / "task_type_prompts" / "prompts.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if len(r["prompt"]) <= MAX_CHARS]
    rows.sort(key=lambda r: hashlib.sha256(r["prompt"].encode()).hexdigest())
    chosen = []
    for task, sources in PICKS.items():
        for source, count in sources:
            matching = [r for r in rows if r["source"] == source and r["task_type"] == task]
            chosen += [("chat", r) for r in matching[:count]]
    mmlu = [r for r in rows if r["source"] == "mmlu"]
    chosen += [("embedding", r) for r in mmlu[20:40]]
    with (OUT / "prompts.jsonl").open("w") as out:
        for kind, row in chosen:
            record = {
                "id": row["id"],
                "source": row["source"],
                "license": row["license"],
                "task_type": "embedding" if kind == "embedding" else row["task_type"],
                "prompt": row["prompt"],
            }
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    notices = (data / "task_type_prompts" / "LICENSE-NOTICES.md").read_text()
    apache = (data / "routellm_evals" / "LICENSE").read_text()
    (OUT / "PROMPTS_LICENSES.md").write_text(
        "# Licences of the demo's prompt sample (prompts.jsonl)\n\n"
        "The prompts are taken unchanged from public benchmarks, through the project's\n"
        "task-type data set. Each line of prompts.jsonl names its source and licence.\n"
        "Only the MIT (HumanEval, GSM8K, MMLU) and Apache-2.0 (MT-Bench, via lm-sys/RouteLLM)\n"
        "sources are used. The notices of that data set follow, then the Apache-2.0 text.\n\n"
        + notices.replace("# License notices for prompts.csv", "## Notices").strip()
        + "\n\n## Apache License 2.0 (MT-Bench via lm-sys/RouteLLM)\n\n```\n"
        + apache.strip()
        + "\n```\n"
    )
    print(f"wrote {len(chosen)} prompts to {OUT / 'prompts.jsonl'}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data"))
