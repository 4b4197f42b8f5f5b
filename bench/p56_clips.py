"""Rebuild the P.56 reference clips of ``bench/p56_reference.json`` from their recipes (no audio is shipped).

Speech comes from espeak-ng, resampled by sox without dither; assembly, gain, noise
(numpy's frozen legacy RandomState) and int16 rounding happen here, so the same
Debian packages give the same samples (the JSON records each clip's SHA-256).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REFERENCE = Path(__file__).with_name("p56_reference.json")


def load_reference() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(REFERENCE.read_text())
    return data


def _sentence(text: str, voice: str, speed: int, rate: int, tmp: Path) -> npt.NDArray[np.float64]:
    wav, raw = tmp / "sentence.wav", tmp / "sentence.f32"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text], check=True)
    subprocess.run(
        ["sox", "-R", "-D", str(wav), "-t", "raw", "-e", "floating-point", "-b", "32", "-L", str(raw), "rate", "-h",
         str(rate)],
        check=True,
    )
    return np.fromfile(raw, dtype="<f4").astype(np.float64)


def build(recipe: dict[str, Any]) -> npt.NDArray[np.int16]:
    rate = int(recipe["fs"])
    if recipe["kind"] in ("sine", "square"):
        n = np.arange(round(recipe["dur_s"] * rate))
        wave = np.sin(2 * np.pi * recipe["freq_hz"] * n / rate)
        if recipe["kind"] == "square":
            wave = np.where(np.sin(2 * np.pi * recipe["freq_hz"] * (n + 0.5) / rate) >= 0, 1.0, -1.0)
        return np.round(wave * recipe["amp_lsb"]).astype("<i2")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        parts = [np.zeros(round(recipe["lead_s"] * rate))]
        for i, text in enumerate(recipe["sentences"]):
            if i:
                parts.append(np.zeros(round(recipe["pause_s"] * rate)))
            parts.append(_sentence(text, recipe["voice"], recipe["speed_wpm"], rate, tmp))
        parts.append(np.zeros(round(recipe["trail_s"] * rate)))
    x = np.concatenate(parts) * 10.0 ** (recipe["gain_db"] / 20.0)
    if recipe["noise_dbfs"] is not None:
        noise = np.random.RandomState(recipe["noise_seed"]).standard_normal(len(x))
        x = x + noise * (10.0 ** (recipe["noise_dbfs"] / 20.0) / np.sqrt(np.mean(noise**2)))
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2")


def sha256(samples: npt.NDArray[np.int16]) -> str:
    return hashlib.sha256(samples.tobytes()).hexdigest()
