"""``python -m toolforge export runs/<arm> [--gguf OUT.gguf] [--quant q8_0|q4_k_m|f16]``: a router as
one GGUF file for llama.cpp (``Router(model="OUT.gguf")``, the fast path on a CPU).

Nothing here converts by hand: the run's adapter is merged into its base (``toolforge.train.merge``),
llama.cpp's own ``convert_hf_to_gguf.py`` writes an f16 GGUF with the tokenizer and the chat template,
and llama.cpp's quantizer (``llama_cpp.llama_model_quantize``) makes q8_0 or q4_k_m from it. The
converter comes from the llama-cpp-python source distribution of the pinned version, which
``scripts/setup.sh`` unpacks into ``<venv>/share/llama.cpp`` (or $TOOLFORGE_LLAMA_CPP).

Without ``--gguf`` the file goes into the run folder as ``router-<quant>.gguf``, where the model router
finds it: ``Router("runs/<arm>")`` on a CPU uses ``router-q8_0.gguf`` when it is newer than the adapter.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from toolforge.run import DEFAULT_QUANT, RunDir, copy_model_files

# Quantisation name -> llama.cpp file type (enum llama_ftype in llama.h).
QUANTS = {"f32": 0, "f16": 1, "q8_0": 7, "q4_k_m": 15}


class ExportError(RuntimeError):
    """The export cannot run here (no converter, no llama-cpp-python) or a step failed."""


def converter_dir() -> Path:
    return Path(os.environ.get("TOOLFORGE_LLAMA_CPP") or Path(sys.prefix) / "share" / "llama.cpp")


def export(model: str | Path, out: str | Path | None = None, quant: str = DEFAULT_QUANT) -> Path:
    """Write ``model`` (a run folder, merged model or HF folder) as a GGUF at ``out``; returns its path."""
    if quant not in QUANTS:
        raise ExportError(f"unknown quantisation {quant!r}; expected one of {list(QUANTS)}")
    out = Path(out) if out else RunDir(model).gguf(quant)
    converter = converter_dir() / "convert_hf_to_gguf.py"
    if not converter.is_file():
        raise ExportError(f"llama.cpp's converter is not at {converter}: run scripts/setup.sh "
                          "(or point $TOOLFORGE_LLAMA_CPP at an unpacked llama.cpp source tree)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="toolforge-export-", dir=out.parent) as tmp:
        from toolforge.train.merge import merge

        print(f"export: merging {model} into one float32 model")
        merged = merge(model, Path(tmp) / "merged", dtype="float32")
        float_type = "f32" if quant == "f32" else "f16"   # what the quantizer starts from
        converted = Path(tmp) / f"model-{float_type}.gguf"
        print(f"export: converting to GGUF ({float_type}) with llama.cpp's convert_hf_to_gguf.py")
        done = subprocess.run([sys.executable, str(converter), str(merged), "--outfile", str(converted),
                               "--outtype", float_type], capture_output=True, text=True)
        if done.returncode != 0:
            raise ExportError(f"convert_hf_to_gguf.py failed:\n{done.stderr[-2000:]}")
        if quant != float_type:
            print(f"export: quantising to {quant} with llama.cpp's quantizer")
            quantize(converted, converted.with_name(f"model-{quant}.gguf"), quant)
            converted = converted.with_name(f"model-{quant}.gguf")
        os.replace(converted, out)   # whole or not at all
    for copied in copy_model_files(model, out.parent):  # the tokens it may write, the tools it was trained on
        print(f"export: {copied} goes with it")
    print(f"export: wrote {out} ({out.stat().st_size / 2**20:.0f} MiB)")
    return out


def quantize(source: Path, target: Path, quant: str) -> None:
    try:
        import llama_cpp
    except ImportError as e:
        raise ExportError("quantising needs llama-cpp-python (pip install -r requirements.txt)") from e
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANTS[quant]
    params.nthread = os.cpu_count() or 1
    if llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params) != 0:
        raise ExportError(f"llama_model_quantize failed for {source} -> {quant}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toolforge export",
                                     description="Export a router as a GGUF file for llama.cpp (fast CPU routing).")
    parser.add_argument("model", help="runs/<arm>/ (its adapter is merged into its base), or a model folder")
    parser.add_argument("--gguf", help="output file (default: <run>/router-<quant>.gguf)")
    parser.add_argument("--quant", choices=list(QUANTS), default=DEFAULT_QUANT,
                        help=f"weights' format (default {DEFAULT_QUANT})")
    args = parser.parse_args(argv)
    try:
        export(args.model, args.gguf, args.quant)
    except (ExportError, FileNotFoundError, ValueError, OSError) as e:
        print(f"export: {e}", file=sys.stderr)
        return 2
    return 0
