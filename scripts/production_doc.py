"""docs/production.md from the production dry run's JSON (scripts/production_dryrun.py --doc): every figure
comes from the run; the serving guide around them is fixed text."""

from __future__ import annotations

from pathlib import Path


def _fmt(x, digits: int = 3) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1e-2 and x else f"{x:,.{digits}f}".rstrip("0").rstrip(".")
    return f"{x:,}" if isinstance(x, int) else str(x)


def _notes(r: dict) -> str:
    notes = r.get("notes") or []
    return ("\n**Notes on this run:**\n\n" + "\n".join(f"- {n}" for n in notes) + "\n") if notes else ""


def _missing(phase: str) -> str:
    return (f"_The {phase} phase has not run on this machine yet: `python scripts/production_dryrun.py --phases {phase}` "
            "(with the options above) runs it and adds it to the JSON; the tiny-config CI test runs it every time._\n")


def _checks(r: dict) -> str:
    rows = [f"| {k.replace('_', ' ')} | {'✅ yes' if v else '❌ no' if v is False else 'not run'} |" for k, v in r.get("checks", {}).items()]
    return "| check | holds |\n|---|---|\n" + "\n".join(rows)


def _train(r: dict) -> str:
    t = r.get("train")
    if not t:
        return _missing("train")
    p, est = t["parameters"], t["plan"]
    rss = "\n".join(f"| {x['rank']} | {x['peak_rss_gib']} | {est['total_gib']} | {x['plan_error']:+.1%} |" for x in t["rss"])
    toks = "\n".join(f"| {x['rank']} | {_fmt(x['tokens'])} | {x['tokens_per_s']} | {x['padded_tokens_per_s']} |" for x in t["tokens"])
    return f"""{t['processes']} processes, {t['precision']}, {t['steps_per_epoch']} steps/epoch, a checkpoint every
{t['checkpoint_every']} steps (20 % of an epoch); checkpoints written at steps {', '.join(map(str, t['checkpoints']))}.

| parameters | run | `teacher plan` |
|---|---|---|
| LoRA (r=128, q_proj + v_proj) | {_fmt(p['lora'])} | {_fmt(p['plan_lora'])} |
| head | {_fmt(p['head'])} | {_fmt(p['plan_head'])} |
| backbone (frozen) | | {_fmt(p['backbone'])} |

Peak RSS per process against `teacher plan --device cpu` for this recipe ({est['precision']}, batch
{est['batch_size_per_device']} × {est['max_length']} tokens): weights {est['weights_gib']} GiB + the checkpoint while
loading {est['checkpoint_while_loading_gib']} GiB (the larger of it and trainables + AdamW {est['trainable_and_optimizer_gib']} +
activations {est['activations_gib']}) + process {est['reserve_gib']} GiB{' (measured in this run: the same launch training one step of the architecture shrunk to one 16-wide layer)' if t.get('process_baseline_gib') is not None else ''}.

| rank | peak RSS (GiB) | plan (GiB) | plan error |
|---|---|---|---|
{rss}

Speed: **{t['seconds_per_step']} s per step** (steps {', '.join(map(str, t['timed_steps']))}; a step is one optimizer step of
every process; checkpoint saves and dev evaluations not counted).

| rank | tokens in the timed steps | tokens/s | tokens/s incl. padding |
|---|---|---|---|
{toks}
"""


def _resume(r: dict) -> str:
    x = r.get("resume")
    if not x:
        return _missing("resume")
    rows = "\n".join(f"| {s} | {x['losses_uninterrupted'][s]!r} | {x['losses_resumed'][s]!r} |" for s in x["losses_resumed"])
    who = f"all {x['killed_processes']} of its processes (launcher and workers)" if x.get("killed_processes") else "its launcher's process group"
    return f"""The same run was killed with SIGKILL ({who}) once `{x['killed_after_checkpoint']}` was on
disk (last step logged before the kill: {x['last_step_logged_before_kill']}), then rerun with the same command; it
{'printed' if x['resumed_from_message'] else 'did NOT print'} `resuming from {x['killed_after_checkpoint']}`.

| step | loss, uninterrupted | loss, killed + resumed |
|---|---|---|
{rows}

Largest loss difference: **{_fmt(x['max_loss_diff'])}**; largest difference of the final LoRA and head weights:
{_fmt(x['max_final_weight_diff'])}.
"""


def _score(r: dict) -> str:
    s = r.get("score")
    if not s:
        return _missing("score")
    return f"""{_fmt(s['pairs'])} pairs (50 per query, short product texts), scored by `teacher score` under `accelerate
launch` with {s['processes']} processes (shards split between them) and by one process: same rows in the same order
{'yes' if s['same_rows_in_order'] else 'NO'}, largest score difference **{_fmt(s['max_score_diff'])}** (logit
{_fmt(s['max_logit_diff'])}). Wall time {s['sharded']['wall_s']} s with {s['processes']} processes (model loads
included) and {s['single']['wall_s']} s in one process.
"""


def _export(r: dict) -> str:
    e = r.get("export")
    if not e:
        return _missing("export")
    files = ", ".join(f"`{k}` {v} GiB" for k, v in sorted(e["files_gib"].items()) if v >= 0.001)
    return f"""`{e['command'].split(' --teacher')[0]}` of the trained mlp teacher wrote ONNX in {e['wall_s']} s ({files}).
ONNX Runtime in a fresh interpreter that imported {', '.join(e['imported_in_scorer']) or 'none of reldistill, torch, transformers'}
scored {e['parity_pairs']} pairs of different lengths: largest difference from the teacher's scores
**{_fmt(e['max_score_diff'])}** (logits {_fmt(e['max_logit_diff'])}).
"""


def render(r: dict, json_path: Path) -> str:
    su = r.get("setup", {})
    m = su.get("machine", {})
    changes = "\n".join(f"| `{k}` | `{v}` |" for k, v in su.get("changes", {}).items())
    return f"""# The production recipe, proven at its real size

Generated by `scripts/production_dryrun.py` from [`{json_path.name}`]({json_path.name}) — do not edit by hand.

**Run:** commit `{su.get('commit')}`, {su.get('date')}, {m.get('cpu')} ({m.get('cores')} cores, {', '.join(m.get('isa', []))};
{m.get('memory_gib')} GiB), torch {m.get('torch')}, CUDA {'yes' if m.get('cuda') else 'no'};
{su.get('weights')} weights of the architecture in `{su.get('model_config')}`; {su.get('processes')} processes ×
{su.get('threads_per_process')} thread.

```bash
nice -n 19 {su.get('command')}
```

The seed recipe (`{su.get('seed_recipe')}`) runs unchanged except these keys (a CPU cannot run batch 32 × 256
tokens of a 1B model in minutes; fp32 makes the resume comparison exact):

| key | dry run |
|---|---|
{changes}

{_checks(r)}
{_notes(r)}
## Training under `accelerate launch`: parameters, memory, speed

{_train(r)}
## kill -9 after the 20 % checkpoint, then resume

{_resume(r)}
## Sharded scoring equals one process

{_score(r)}
## Export and parity

{_export(r)}
{SERVING}"""


SERVING = """## Serving the teacher: which head for which engine

vLLM's and TEI's score / rerank endpoints take a sequence-classification model whose score is one linear row
over the last token's hidden state. So:

| head | recipe | `reldistill teacher export` writes | serve with |
|---|---|---|---|
| `lm` (yes/no from the LM head) | `configs/llama-3.2-1b-lm-a100.yaml` | a `LlamaForSequenceClassification` folder: `score.weight` = W[" yes"] − W[" no"] (the conversion vLLM's `convert_model_to_seq_cls.py` applies to Qwen3-Reranker) | vLLM, TEI, plain transformers |
| `linear` | `teacher.head: linear` | the same folder (the head's row) | vLLM, TEI, plain transformers |
| `mlp` (the seed) | `configs/llama-3.2-1b-a100.yaml` | ONNX (`--format onnx`, the default for mlp): `model.onnx` + `model.onnx.data` + `tokenizer.json` | ONNX Runtime, Triton's ONNX Runtime backend, any ONNX server |

Pick `lm` when the teacher must sit behind vLLM or TEI; pick `mlp` (the seed) when ONNX Runtime serves it.
A teacher trained with a bi-encoder prior (`teacher.prior_student`) whose dev choice blends in the cosine is refused
by `teacher export` (an exported model holds the LLM alone); one whose dev choice kept the LLM alone exports as is.
Both exports score pairs in the teacher's own prompt: the export's README shows the exact encoding (template,
BOS, truncation of the product text first); `config.json` → `reldistill` holds the template, `max_length`,
padding side and, for the sequence-classification folder, `score_bias` (HF's score layer has no bias:
`sigmoid(logit + score_bias)` is the teacher's probability; rankings are the same without it).

```bash
reldistill teacher export --teacher runs/llama-lm/teacher --out runs/llama-lm/seq-cls      # lm or linear head
reldistill teacher export --teacher runs/llama/teacher --out runs/llama/onnx               # mlp head → ONNX
```

**vLLM** (a cross-encoder score endpoint; the folder is already a one-label sequence classifier, so no
`--hf-overrides` conversion is needed):

```bash
vllm serve runs/llama-lm/seq-cls --task score --dtype bfloat16 --max-model-len 256
curl localhost:8000/score -H 'Content-Type: application/json' \\
  -d '{"model": "runs/llama-lm/seq-cls", "text_1": "<template up to {text}, query filled in>", "text_2": ["nike running shoe<the template after {text}>"]}'
```

vLLM tokenizes the pair as BOS + `text_1` + `text_2` (the export's tokenizer adds BOS the way the teacher does),
so `text_1` is the teacher's template up to `{text}` with the query filled in and each `text_2` is a product text
followed by the rest of the template: the teacher's own prompt (the export's README `encode` builds it by parts,
cutting long product texts first). The score vLLM returns is sigmoid(logit); add `score_bias` to the logit for the
teacher's probability.

**TEI** (text-embeddings-inference serves sequence classifiers on `/rerank` and `/predict`):

```bash
docker run --gpus all -p 8080:80 -v $PWD/runs/llama-lm/seq-cls:/model \\
  ghcr.io/huggingface/text-embeddings-inference:1.8 --model-id /model --dtype bfloat16 --max-batch-tokens 16384
curl localhost:8080/predict -H 'Content-Type: application/json' \
  -d '{"inputs": [["<template up to {text}, query filled in>", "nike running shoe<the template after {text}>"]], "raw_scores": true}'
```

The pair is built as for vLLM; `raw_scores` returns the logit (add `score_bias`, then sigmoid, for the
teacher's probability).

**ONNX Runtime** (the mlp head): the export's README is a complete scorer in `onnxruntime` + `tokenizers` +
`numpy`; Triton serves the same file with `platform: "onnxruntime_onnx"` (inputs `input_ids`, `attention_mask`
int64 [batch, seq]; output `logits` [batch]).

## QLoRA (4-bit)

`teacher.load_in_4bit: true` loads the frozen backbone in NF4 through bitsandbytes. Where the installed
bitsandbytes has no 4-bit kernel for the device, training stops before any weights load with one sentence
(`teacher.load_in_4bit needs a bitsandbytes 4-bit kernel for <device> ...`). `teacher plan` prints the 4-bit
figure beside bf16 (`precision  ≈… GiB bf16 · ≈… GiB 4-bit NF4`), for the GPU or, with `--device cpu`, for a
CPU process.
"""
