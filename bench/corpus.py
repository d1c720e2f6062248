"""A seeded generator of Indonesian sentences of mixed length (10-80 words)."""

from __future__ import annotations

import random

SUBJECTS = (
    "Pemerintah daerah",
    "Warga desa",
    "Para petani",
    "Mahasiswa",
    "Nelayan setempat",
    "Dinas kesehatan",
    "Perusahaan swasta",
    "Guru sekolah dasar",
    "Polisi hutan",
    "Pedagang pasar",
)
VERBS = (
    "membahas",
    "menolak",
    "mendukung",
    "meninjau",
    "melaporkan",
    "mengumumkan",
    "memperbaiki",
    "membangun",
    "mengawasi",
    "menyelidiki",
)
OBJECTS = (
    "rencana tata ruang kota",
    "harga beras di pasar",
    "penebangan liar di hutan lindung",
    "jalan desa yang rusak",
    "program vaksinasi anak",
    "izin tambang pasir",
    "anggaran pendidikan",
    "pencemaran sungai",
    "perlindungan satwa langka",
    "jadwal kereta api",
)
TAILS = (
    "pada rapat hari Senin",
    "setelah banjir besar minggu lalu",
    "di balai desa",
    "menjelang musim hujan",
    "bersama lembaga swadaya masyarakat",
    "tanpa pemberitahuan",
    "dengan anggaran tambahan",
    "sesuai peraturan daerah",
    "di kantor kecamatan",
    "karena keluhan warga",
)


def sentences(count: int, *, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        words: list[str] = []
        target = rng.randint(10, 80)
        while len(words) < target:
            clause = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} "
            words += (clause + rng.choice(TAILS)).split()
        out.append(" ".join(words[:target]) + ".")
    return out
