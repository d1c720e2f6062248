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


def probe_images() -> dict[str, object]:
    """Small Pillow drawings in every mode and aspect the image path must handle."""
    from PIL import Image, ImageDraw

    images: dict[str, object] = {}
    for label, size, colour in (
        ("red circle, square", (96, 96), (220, 30, 30)),
        ("blue box, wide", (160, 90), (30, 60, 220)),
        ("green, tall", (70, 140), (40, 180, 60)),
    ):
        image = Image.new("RGB", size, (245, 245, 240))
        draw = ImageDraw.Draw(image)
        w, h = size
        draw.ellipse((w // 4, h // 4, 3 * w // 4, 3 * h // 4), fill=colour)
        images[label] = image
    images["grayscale"] = images["red circle, square"].convert("L")
    images["rgba"] = images["blue box, wide"].convert("RGBA")
    return images
