"""A deterministic, realistic, linked clinical demo corpus (entirely fake people).

Each record is one hospital visit of a fake patient: a Faker identity (name, SSN, e-mail, phone, address, MRN,
date of birth consistent with the age), tabular fields with realistic correlations (diagnosis drives age, labs,
length of stay, smoking), a free-text note that names the patient, the visit date and the findings, and a small
grayscale "chest scan" whose content depends on the diagnosis. About one patient in ten has several visits, so
the corpus exercises person-level privacy (``entity: patient_id``).

The links are deliberately strong so that cross-modal consistency can be measured: a bag-of-words classifier on
the notes, or a small classifier on the scans, recovers the diagnosis far above chance.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from faker import Faker
from PIL import Image

from privsynth.data.atomic import atomic_dir
from privsynth.data.corpus import write_table
from privsynth.data.images import encode_png
from privsynth.data.schema import ColumnKind, ColumnSpec, ImageMode, PiiType, Schema

DIAGNOSES = ("healthy", "pneumonia", "heart_failure", "diabetes", "fracture")
_DIAGNOSIS_P = (0.3, 0.2, 0.15, 0.2, 0.15)
INSURANCE = ("medicare", "private", "medicaid", "uninsured")
IMAGE_SIZE = 32
FIRST_VISIT, LAST_VISIT = dt.date(2020, 1, 1), dt.date(2024, 12, 31)

# (mean age, sd age, P(smoker), mean length of stay)
_PROFILE = {
    "healthy": (45, 15, 0.15, 0.0),
    "pneumonia": (62, 16, 0.35, 5.0),
    "heart_failure": (72, 10, 0.30, 6.0),
    "diabetes": (58, 13, 0.15, 1.0),
    "fracture": (50, 22, 0.15, 3.0),
}

_SYMPTOMS = {
    "healthy": [
        "came in for an annual physical examination",
        "attended a routine check-up with no complaints",
        "presented for a pre-employment health screen",
    ],
    "pneumonia": [
        "presented with productive cough and fever for three days",
        "reported shortness of breath, fever and pleuritic chest pain",
        "presented with cough, chills and rusty sputum",
    ],
    "heart_failure": [
        "presented with worsening dyspnea and ankle swelling",
        "reported orthopnea and a weight gain of four kilograms in a week",
        "presented with exertional breathlessness and leg edema",
    ],
    "diabetes": [
        "reported polyuria and polydipsia",
        "presented with fatigue and blurred vision",
        "came in for follow-up of elevated blood sugars",
    ],
    "fracture": [
        "presented after a fall onto an outstretched hand",
        "reported pain and swelling of the left ankle after a twisting injury",
        "presented with wrist deformity after slipping on ice",
    ],
}
_FINDINGS = {
    "healthy": ["Examination unremarkable.", "Heart and lungs clear; no abnormal findings."],
    "pneumonia": [
        "Crackles at the right base; chest X-ray shows lobar consolidation.",
        "Bronchial breathing on the left; imaging shows a patchy infiltrate.",
    ],
    "heart_failure": [
        "Bilateral pitting edema, raised JVP; chest X-ray shows cardiomegaly.",
        "Basal crackles and an enlarged cardiac silhouette on imaging.",
    ],
    "diabetes": [
        "HbA1c elevated; foot examination shows reduced sensation.",
        "Fasting glucose high on repeat testing; small vascular calcifications on imaging.",
    ],
    "fracture": [
        "X-ray confirms a displaced distal radius fracture.",
        "X-ray shows a fracture line through the lateral malleolus.",
    ],
}
_ASSESSMENT = {
    "healthy": ["healthy adult, no acute issues", "no active disease"],
    "pneumonia": ["community-acquired pneumonia", "lobar pneumonia"],
    "heart_failure": ["acute decompensated heart failure", "congestive heart failure exacerbation"],
    "diabetes": ["type 2 diabetes mellitus, poorly controlled", "uncontrolled type 2 diabetes"],
    "fracture": ["closed fracture, neurovascularly intact", "simple fracture requiring immobilisation"],
}
_PLAN = {
    "healthy": ["Return in one year.", "Continue current lifestyle; recheck in twelve months."],
    "pneumonia": ["Started on amoxicillin; review in 48 hours.", "Admitted for IV ceftriaxone and azithromycin."],
    "heart_failure": ["IV furosemide and daily weights.", "Diuresis started; echocardiogram booked."],
    "diabetes": ["Metformin increased; dietitian referral.", "Started on basal insulin; education given."],
    "fracture": ["Cast applied; orthopaedics follow-up in one week.", "Reduced under sedation and splinted."],
}
_RELATIVES = ["daughter", "son", "wife", "husband", "sister", "brother"]


@dataclass(frozen=True)
class _Person:
    patient_id: str
    first: str
    last: str
    sex: str
    ssn: str
    email: str
    phone: str
    address: str
    mrn: str
    birth: dt.date


def demo_schema() -> Schema:
    """The demo corpus schema. Declared-public metadata comes from the generator's own codebook.

    Some columns (insurance, bmi, wbc) deliberately declare nothing, so the demo exercises DP profiling.
    """
    c = ColumnSpec
    k = ColumnKind
    return Schema(
        table="records.parquet",
        key="record_id",
        entity="patient_id",
        max_records_per_entity=2,
        columns={
            "record_id": c(kind=k.KEY),
            "patient_id": c(kind=k.KEY),
            "name": c(kind=k.IDENTIFIER, pii=PiiType.PERSON),
            "ssn": c(kind=k.IDENTIFIER, pii=PiiType.SSN),
            "email": c(kind=k.IDENTIFIER, pii=PiiType.EMAIL),
            "phone": c(kind=k.IDENTIFIER, pii=PiiType.PHONE),
            "address": c(kind=k.IDENTIFIER, pii=PiiType.ADDRESS),
            "mrn": c(kind=k.IDENTIFIER, pii=PiiType.MRN),
            "date_of_birth": c(kind=k.IDENTIFIER, pii=PiiType.DATE_OF_BIRTH),
            "visit_date": c(kind=k.DATETIME, date_range=(FIRST_VISIT, LAST_VISIT), date_only=True, nullable=False),
            "age": c(kind=k.NUMERICAL, integer=True, bounds=(18, 95), nullable=False),
            "sex": c(kind=k.CATEGORICAL, domain=("F", "M"), nullable=False),
            "diagnosis": c(kind=k.CATEGORICAL, domain=DIAGNOSES, nullable=False),
            "insurance": c(kind=k.CATEGORICAL),
            "smoker": c(kind=k.BOOLEAN),
            "bmi": c(kind=k.NUMERICAL, decimals=1),  # recorded to one decimal (the codebook; no range declared)
            "systolic_bp": c(kind=k.NUMERICAL, integer=True, bounds=(70, 240)),
            "glucose": c(kind=k.NUMERICAL, integer=True, bounds=(40, 500)),
            "wbc": c(kind=k.NUMERICAL, decimals=1),
            "length_of_stay": c(kind=k.NUMERICAL, integer=True, bounds=(0, 60), nullable=False),
            "note": c(kind=k.TEXT, max_length=1000),
            "scan": c(kind=k.IMAGE, image_size=(IMAGE_SIZE, IMAGE_SIZE), image_mode=ImageMode.GRAY),
        },
    )


def _person(fake: Faker, rng: np.random.Generator, index: int) -> _Person:
    sex = "F" if rng.random() < 0.52 else "M"
    first = fake.first_name_female() if sex == "F" else fake.first_name_male()
    last = fake.last_name()
    domain = fake.free_email_domain()
    return _Person(
        patient_id=f"P{index:05d}",
        first=first,
        last=last,
        sex=sex,
        ssn=fake.ssn(),
        email=f"{first.lower()}.{last.lower()}{rng.integers(1, 99)}@{domain}",
        phone=f"({rng.integers(201, 990)}) {rng.integers(201, 999)}-{rng.integers(0, 10_000):04d}",
        address=fake.address().replace("\n", ", "),
        mrn=f"{rng.integers(10_000_000, 99_999_999)}",
        birth=dt.date(1930, 1, 1),  # set per visit below, consistent with age
    )


def _visit_row(
    person: _Person, rng: np.random.Generator, fake: Faker, record: int, age: int, visit: dt.date, diagnosis: str
) -> dict[str, object]:
    _, _, p_smoker, mean_stay = _PROFILE[diagnosis]
    smoker = bool(rng.random() < p_smoker)
    bmi = float(np.clip(rng.normal(33 if diagnosis == "diabetes" else 26, 5 if diagnosis == "diabetes" else 4), 15, 55))
    sbp = int(
        np.clip(
            rng.normal(
                112
                + 0.45 * (age - 45)
                + (22 if diagnosis == "heart_failure" else 0)
                + (8 if diagnosis == "diabetes" else 0),
                11,
            ),
            80,
            220,
        )
    )
    glucose = int(np.clip(rng.normal(190, 45) if diagnosis == "diabetes" else rng.normal(96, 12), 50, 480))
    wbc = float(
        np.clip(
            rng.normal(14.5, 3.0)
            if diagnosis == "pneumonia"
            else rng.normal(9.0, 2.0)
            if diagnosis == "fracture"
            else rng.normal(7.0, 1.5),
            1.5,
            35,
        )
    )
    stay = int(min(60, rng.poisson(mean_stay)))
    insurance = (
        "medicare" if age >= 65 and rng.random() < 0.85 else str(rng.choice(INSURANCE[1:], p=(0.62, 0.25, 0.13)))
    )
    return {
        "record_id": f"R{record:06d}",
        "patient_id": person.patient_id,
        "name": f"{person.first} {person.last}",
        "ssn": person.ssn,
        "email": person.email,
        "phone": person.phone,
        "address": person.address,
        "mrn": person.mrn,
        "date_of_birth": person.birth.isoformat(),
        "visit_date": pd.Timestamp(visit),
        "age": age,
        "sex": person.sex,
        "diagnosis": diagnosis,
        "insurance": insurance if rng.random() > 0.02 else None,
        "smoker": smoker,
        "bmi": round(bmi, 1),
        "systolic_bp": sbp,
        "glucose": glucose if rng.random() > 0.05 else None,
        "wbc": round(wbc, 1) if rng.random() > 0.03 else None,
        "length_of_stay": stay,
        "note": _note(person, rng, fake, age, visit, diagnosis, sbp, glucose, wbc),
    }


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _note(
    person: _Person,
    rng: np.random.Generator,
    fake: Faker,
    age: int,
    visit: dt.date,
    diagnosis: str,
    sbp: int,
    glucose: int,
    wbc: float,
) -> str:
    title = "Ms." if person.sex == "F" else "Mr."
    style = int(rng.integers(3))
    who = [f"{person.first} {person.last}", f"{person.last}, {person.first}", f"{title} {person.last}"][style]
    sex_word = "woman" if person.sex == "F" else "man"
    article = "an" if str(age).startswith(("8", "11", "18")) else "a"
    symptoms = _pick(rng, _SYMPTOMS[diagnosis])
    parts = [
        f"{visit.isoformat()}: {who}, {article} {age}-year-old {sex_word} (MRN {person.mrn}), {symptoms}.",
        f"BP {sbp}/{int(sbp * 0.62)}.",
    ]
    if diagnosis == "pneumonia" or rng.random() < 0.3:
        parts.append(f"WBC {wbc:.1f}.")
    if diagnosis == "diabetes" or rng.random() < 0.3:
        parts.append(f"Glucose {glucose} mg/dL.")
    parts.append(_pick(rng, _FINDINGS[diagnosis]))
    if rng.random() < 0.25:
        relative = _pick(rng, _RELATIVES)
        parts.append(f"Accompanied by {'her' if person.sex == 'F' else 'his'} {relative} {fake.name()}.")
    if rng.random() < 0.15:
        parts.append(f"DOB {person.birth.strftime('%m/%d/%Y')}; contact {person.phone}.")
    parts.append(f"Assessment: {_pick(rng, _ASSESSMENT[diagnosis])}. Plan: {_pick(rng, _PLAN[diagnosis])}")
    return " ".join(parts)


def draw_scan(diagnosis: str, rng: np.random.Generator, size: int = IMAGE_SIZE) -> Image.Image:
    """A procedural grayscale chest 'scan' whose visible signs depend on the diagnosis."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / size
    cx = 0.5 + rng.normal(0, 0.02)
    body = np.exp(-((((x - cx) / 0.42) ** 2 + ((y - 0.55) / 0.5) ** 2) ** 3))
    img = 25 + 85 * body
    for side in (-1, 1):  # lungs: darker ellipses either side of the spine
        lung = np.exp(-((((x - cx - side * 0.19) / 0.13) ** 2 + ((y - 0.48) / 0.27) ** 2) ** 2))
        img -= 50 * lung
    img += 70 * np.exp(-(((x - cx) / 0.025) ** 2)) * (y > 0.1)  # spine
    for rib in np.linspace(0.28, 0.72, 5):  # faint ribs
        img += 14 * np.exp(-(((y - rib - 0.08 * np.abs(x - cx)) / 0.012) ** 2)) * (np.abs(x - cx) < 0.36)
    heart_r = 0.10 + (0.07 if diagnosis == "heart_failure" else 0.0) + rng.normal(0, 0.008)
    img += 75 * np.exp(-((((x - cx + 0.05) / heart_r) ** 2 + ((y - 0.62) / (heart_r * 0.8)) ** 2) ** 2))
    if diagnosis == "pneumonia":  # consolidation: a bright patch in one lung
        side = 1 if rng.random() < 0.5 else -1
        px, py = cx + side * (0.19 + rng.normal(0, 0.03)), 0.5 + rng.normal(0, 0.08)
        img += 85 * np.exp(-(((x - px) / 0.08) ** 2 + ((y - py) / 0.1) ** 2))
    elif diagnosis == "heart_failure":  # haze in both lungs
        img += 25 * np.exp(-(((y - 0.62) / 0.2) ** 2))
    elif diagnosis == "diabetes":  # small bright calcifications
        for _ in range(4):
            px, py = cx + rng.uniform(-0.3, 0.3), rng.uniform(0.3, 0.8)
            img += 110 * np.exp(-(((x - px) / 0.018) ** 2 + ((y - py) / 0.018) ** 2))
    elif diagnosis == "fracture":  # a bright bone with a dark break (clavicle)
        angle = rng.normal(0.15, 0.05)
        bone = np.exp(-(((y - 0.2 - angle * (x - cx)) / 0.025) ** 2)) * (np.abs(x - cx) < 0.4)
        gap = np.exp(-(((x - cx - rng.choice([-0.2, 0.2])) / 0.025) ** 2))
        img += 110 * bone * (1 - 0.9 * gap)
    img += rng.normal(0, 7, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), mode="L")


def build_demo_records(n: int, seed: int) -> tuple[pd.DataFrame, dict[str, bytes]]:
    """``n`` linked records and their scans (PNG bytes keyed by relative path); deterministic for a seed."""
    if n < 1:
        raise ValueError("n must be at least 1")
    rng = np.random.default_rng(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    rows: list[dict[str, object]] = []
    images: dict[str, bytes] = {}
    patient = 0
    span = (LAST_VISIT - FIRST_VISIT).days
    while len(rows) < n:
        patient += 1
        person = _person(fake, rng, patient)
        visits = 1 if rng.random() < 0.9 else int(rng.integers(2, 4))
        first_day = int(rng.integers(0, span - 400 * (visits - 1) + 1))
        diagnosis = str(rng.choice(DIAGNOSES, p=_DIAGNOSIS_P))
        mean_age, sd_age = _PROFILE[diagnosis][:2]
        age0 = int(np.clip(round(rng.normal(mean_age, sd_age)), 18, 92))
        visit0 = FIRST_VISIT + dt.timedelta(days=first_day)
        birth = visit0 - dt.timedelta(days=int(age0 * 365.25 + rng.integers(1, 360)))
        person = _Person(**{**person.__dict__, "birth": birth})
        for v in range(min(visits, n - len(rows))):
            visit = min(LAST_VISIT, visit0 + dt.timedelta(days=int(v * 400 + rng.integers(0, 60))))
            age = min(95, (visit - birth).days * 100 // 36525)
            if v > 0 and rng.random() < 0.6:
                diagnosis = str(rng.choice(DIAGNOSES, p=_DIAGNOSIS_P))
            row = _visit_row(person, rng, fake, len(rows) + 1, age, visit, diagnosis)
            rel = f"images/{row['record_id']}.png"
            images[rel] = encode_png(draw_scan(diagnosis, rng))
            row["scan"] = rel
            rows.append(row)
    frame = pd.DataFrame(rows)
    frame["age"] = frame["age"].astype("Int64")
    for col in ("systolic_bp", "glucose", "length_of_stay"):
        frame[col] = pd.array(frame[col], dtype="Int64")
    frame["smoker"] = frame["smoker"].astype("boolean")
    frame["visit_date"] = frame["visit_date"].astype("datetime64[ns]")
    frame["bmi"] = frame["bmi"].astype("float64")
    frame["wbc"] = pd.to_numeric(frame["wbc"]).astype("float64")
    frame["insurance"] = frame["insurance"].astype(object).where(frame["insurance"].notna(), None)
    return frame, images


def write_demo_corpus(out: Path, *, n: int, seed: int, force: bool = False) -> Path:
    """Build the demo corpus into ``out`` atomically (Parquet table, PNG scans, schema.yaml)."""
    records, images = build_demo_records(n, seed)
    schema = demo_schema()
    header = (
        f"# privsynth demo corpus: {n} fake clinical visits, seed {seed}. Every person in it is invented.\n"
        "# Declared-public metadata below comes from the demo generator's codebook.\n"
    )
    with atomic_dir(out, force=force, private=False) as tmp:  # invented people only
        (tmp / "images").mkdir()
        for rel, data in images.items():
            (tmp / rel).write_bytes(data)
        write_table(records, schema, tmp, header=header)
    return out
