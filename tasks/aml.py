"""AML Hehr: patient-level subtyping of acute myeloid leukaemia from all single cells of a blood smear.

Hehr et al., "Explainable AI identifies diagnostic cells of genetic AML subtypes", PLOS Digital Health 2023;
the DinoBloom study's third evaluation. 189 patients, 5 labels: CBFB::MYH11, NPM1, PML::RARA, RUNX1::RUNX1T1
and control; one bag = all cells of a patient (~100-500). Layout ``<label>/<patient>/<cell image>``, or a
manifest CSV (``patient,label,path``) passed as --data-root for other layouts. Protocols ``abmil-paper`` (the
authors' multi-column attention head) and ``abmil-gated`` (Ilse et al.); repeated patient-level stratified
5-fold CV.
"""

from __future__ import annotations

from tasks.patients import BagTask

AML_LABELS = ("CBFB::MYH11", "NPM1", "PML::RARA", "RUNX1::RUNX1T1", "control")

AML_HEHR = BagTask(
    data_dir="AML_Hehr",
    obtain=(
        "Get the AML Hehr single-cell images (Hehr et al. 2023, PLOS Digital Health; distributed through The "
        "Cancer Imaging Archive) and arrange them as <root>/<label>/<patient>/<cell image> with the labels "
        f"{', '.join(AML_LABELS)}, or write a CSV patient,label,path and pass it as --data-root."
    ),
    licence="not verified here (distributed through The Cancer Imaging Archive; check the collection's licence)",
    citation=("M. Hehr, A. Sadafi, C. Matek, P. Lienemann, C. Pohlkamp, T. Haferlach, K. Spiekermann, C. Marr: "
              "Explainable AI identifies diagnostic cells of genetic AML subtypes. PLOS Digital Health 2(3) (2023) "
              "e0000187, doi:10.1371/journal.pdig.0000187"),
)
