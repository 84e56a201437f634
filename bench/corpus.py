"""
The benchmark corpus: the DICOM files the storage benchmarks send and
receive, made with pydicom by L{tests.dicomfiles}.

Three corpora, each one study of one series in its own directory:

  - C{ct256}: 2,000 CT images of 256 x 256 x 16 bit (128 KiB of pixels);
  - C{ct512}: 500 CT images of 512 x 512 x 16 bit (512 KiB of pixels);
  - C{multiframe}: 2 multi-frame grayscale word secondary capture objects
    of 512 frames of 512 x 512 x 16 bit (256 MiB of pixels each).

and, for many senders at once, L{SENDERS}: 3,200 images of 256 x 256,
in studies of 100 images, one study per sender (made only when asked
for, with L{ensureSendersCorpus}).

Files are explicit VR little endian Part-10 files named C{00001.dcm}...
Making the corpus is idempotent: a file already there is kept, a missing
one is written (through a temporary name, so an interrupted run leaves no
half file behind).  Run from the checkout:

    python bench/corpus.py DIRECTORY

The storage benchmarks import L{ensureCorpus} and L{CORPORA}.
"""

import os
import sys
from dataclasses import dataclass
from typing import List

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from pydicom.uid import generate_uid  # noqa: E402

from tests.dicomfiles import (  # noqa: E402
    CT_IMAGE_STORAGE,
    MULTIFRAME_GRAYSCALE_WORD_SC_STORAGE,
    makeDataset,
    writeFile,
)


@dataclass(frozen=True)
class Corpus:
    """
    One corpus: C{count} objects of C{rows} x C{columns} x C{frames}
    16-bit pixels.

    @ivar name: its directory's name and its name in benchmark tables.
    @ivar perStudy: objects per study (0: all in one study).
    """

    name: str
    description: str
    count: int
    rows: int
    columns: int
    frames: int = 1
    sopClassUID: str = CT_IMAGE_STORAGE
    modality: str = "CT"
    perStudy: int = 0

    def directory(self, root: str) -> str:
        """
        Where this corpus lives under C{root}.
        """
        return os.path.join(root, self.name)

    def paths(self, root: str) -> List[str]:
        """
        The paths of its files under C{root}, in order.
        """
        return [os.path.join(self.directory(root), "%05d.dcm" % (index,)) for index in range(1, self.count + 1)]

    def make(self, root: str) -> int:
        """
        Write the files of this corpus that are missing.

        @return: how many were written.
        """
        directory = self.directory(root)
        os.makedirs(directory, exist_ok=True)
        missing = [path for path in self.paths(root) if not os.path.exists(path)]
        if not missing:
            return 0
        studies = {}
        for path in missing:
            number = int(os.path.basename(path).split(".")[0])
            study = (number - 1) // self.perStudy if self.perStudy else 0
            if study not in studies:
                studies[study] = (generate_uid(), generate_uid())
            studyInstanceUID, seriesInstanceUID = studies[study]
            dataset = makeDataset(
                rows=self.rows,
                columns=self.columns,
                frames=self.frames,
                sopClassUID=self.sopClassUID,
                modality=self.modality,
                patientName="Bench^%s" % (self.name,),
                patientID="BENCH-" + self.name.upper(),
                studyInstanceUID=studyInstanceUID,
                seriesInstanceUID=seriesInstanceUID,
            )
            dataset.InstanceNumber = number
            temporary = path + ".part"
            writeFile(temporary, dataset)
            os.rename(temporary, path)
            del dataset
        return len(missing)


#: The corpora of the storage benchmarks, smallest objects first.
CORPORA = (
    Corpus("ct256", "2,000 images of 256x256x16 bit", 2000, 256, 256),
    Corpus("ct512", "500 images of 512x512x16 bit", 500, 512, 512),
    Corpus(
        "multiframe",
        "2 multi-frame objects of 256 MB",
        2,
        512,
        512,
        frames=512,
        sopClassUID=MULTIFRAME_GRAYSCALE_WORD_SC_STORAGE,
        modality="OT",
    ),
)


#: The corpus of the many-senders benchmark: sender I{n} of N sends
#: objects 100n+1..100n+100, one study.
SENDERS = Corpus("senders", "3,200 images of 256x256x16 bit, 100 per study", 3200, 256, 256, perStudy=100)


def ensureSendersCorpus(root: str, log=None) -> Corpus:
    """
    Make L{SENDERS} under C{root} if it is not complete yet.
    """
    written = SENDERS.make(root)
    if written and log is not None:
        log("%s: wrote %d of %d files in %s" % (SENDERS.name, written, SENDERS.count, SENDERS.directory(root)))
    return SENDERS


def ensureCorpus(root: str, log=None) -> List[Corpus]:
    """
    Make every corpus under C{root} that is not complete yet.

    @param log: called with a line of progress for each corpus written.
    @return: L{CORPORA}.
    """
    for corpus in CORPORA:
        written = corpus.make(root)
        if written and log is not None:
            log("%s: wrote %d of %d files in %s" % (corpus.name, written, corpus.count, corpus.directory(root)))
    return list(CORPORA)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0].startswith("-"):
        sys.stderr.write("usage: python bench/corpus.py DIRECTORY\n")
        return 2
    for corpus in ensureCorpus(argv[0], log=print):
        size = sum(os.path.getsize(path) for path in corpus.paths(argv[0]))
        print("%-10s %-34s %5d files, %8.1f MB" % (corpus.name, corpus.description, corpus.count, size / 1e6))
    return 0


if __name__ == "__main__":
    sys.exit(main())
