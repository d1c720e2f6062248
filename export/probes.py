"""The fixed Indonesian probe set every export is checked on (short, long, punctuation, digits)."""

PROBES: tuple[str, ...] = (
    "kucing oren tidur di kasur",
    "penebangan liar di hutan lindung",
    "perlindungan satwa dilindungi UU 5/1990",
    "UU 41/1999 tentang Kehutanan pasal 50",
    "Anjing golden retriever bermain bola di taman kota pada sore hari.",
    "Harga beras naik 12% menjelang Lebaran, pemerintah menyiapkan operasi pasar.",
    "Bagaimana cara mengurus KTP elektronik yang hilang?",
    "Jakarta",
    "Pantai Kuta di Bali ramai dikunjungi wisatawan mancanegara setiap musim panas, "
    "sementara nelayan setempat tetap melaut sejak subuh untuk menangkap ikan tongkol.",
    "Rapat dewan direksi memutuskan untuk menunda pembagian dividen tahun buku 2023 "
    "karena perusahaan membutuhkan modal kerja tambahan untuk ekspansi pabrik di Karawang, "
    "Jawa Barat, yang ditargetkan beroperasi penuh pada kuartal ketiga tahun depan.",
    "Resep rendang: daging sapi, santan, cabai, bawang merah, bawang putih, lengkuas, serai.",
    "Siswa kelas enam belajar matematika tentang pecahan dan desimal.",
)
