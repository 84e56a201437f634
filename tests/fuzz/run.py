#!/usr/bin/env python3
"""
The long fuzzing run: coverage-guided fuzzing (atheris, libFuzzer's engine
for Python) of the code that reads bytes from the network, with the checks
of C{tests/test_fuzz.py}.

It is not part of the test suite (this directory has no C{__init__.py}, so
trial never collects it); run it by hand, for as long as you like:

    pip install atheris           # once; or --engine hypothesis without it
    python tests/fuzz/run.py                        # every target, 120 s each
    python tests/fuzz/run.py --seconds 600 provider acceptor
    python tests/fuzz/run.py --engine hypothesis --seconds 60

Targets (each runs in its own process, one after another):

  pdu        L{dicomd.ul.pdu.decodePDU} on any type and body; whatever
             decodes must encode back to itself.
  command    L{dicomd.dimse.commands.decodeCommand}; only DIMSEDecodeError,
             and whatever decodes must encode back to itself.
  assembler  L{dicomd.dimse.pdv.MessageAssembler} on any PDVs; only
             DIMSEProtocolError, events in PS3.7 9.3 order.
  provider   L{dicomd.ul.provider.ULProvider} in each state with a
             connection (the first input byte picks it), fed the rest in
             chunks: only documented outputs, always a valid state, nothing
             read after an invalid or closing PDU.
  acceptor   a live L{dicomd.net.acceptor.AcceptorProtocol} (Verification
             and a storage SCP) on a StringTransport: nothing raised or
             logged as an unhandled error, only whole valid PDUs written,
             and the connection closed once the clock has run.

The provider and acceptor targets cut their input into chunks as a peer
sending one PDU at a time would (the mode in the first byte also allows one
chunk, fixed-size chunks, or PDUs cut in two).  Each target starts from a
corpus of valid inputs (a whole association, every PDU type, every command)
written into C{WORKDIR/TARGET/corpus}, where libFuzzer keeps what it finds
interesting; a failing input is saved as C{WORKDIR/TARGET/crash-*} and the
target restarts until its time is up.  The summary gives, per target, the
inputs tried and the distinct failures found.
"""

import argparse
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.dirname(os.path.dirname(HERE))

TARGETS = ("pdu", "command", "assembler", "provider", "acceptor")


# -- the targets ----------------------------------------------------------------------
#
# Imported in the child process, inside atheris's instrumentation, so that
# dicomd's code is traced for coverage.


def _loadHarness():
    global fz, State
    sys.path.insert(0, CHECKOUT)
    import tests.test_fuzz as fz  # noqa: F401  (dicomd.ul, dicomd.dimse)
    import dicomd.net.acceptor  # noqa: F401
    import dicomd.net.association  # noqa: F401
    import dicomd.net.protocol  # noqa: F401
    import dicomd.services.verification  # noqa: F401
    import dicomd.storage.scp  # noqa: F401
    from dicomd.ul.fsm import State  # noqa: F401


def _chunks(mode: int, data: bytes) -> list:
    """
    Cut C{data} into chunks by C{mode} (0 to 3): PDU by PDU, all at once,
    in chunks of a size taken from the first byte, or PDU by PDU with each
    PDU cut in two.
    """
    if mode == 0:
        return fz.framed(data)
    if mode == 1:
        return [data]
    if mode == 2:
        if not data:
            return []
        step = data[0] + 1
        return [data[i : i + step] for i in range(1, len(data), step)]
    chunks = []
    for pdu in fz.framed(data):
        half = len(pdu) // 2
        chunks += [pdu[:half], pdu[half:]]
    return chunks


def fuzzPDU(data: bytes) -> None:
    if data:
        fz.checkDecodePDU(data[0] & 0x07 if data[0] < 0xF0 else data[0], data[1:])


def fuzzCommand(data: bytes) -> None:
    fz.checkDecodeCommand(data)


def pdataTFsFromPDVs(data: bytes) -> list:
    """
    P-DATA-TF PDUs from a simple layout libFuzzer can mutate: PDVs as
    C{context, control header, length, data}, a length of 255 ending the
    PDU.
    """
    pdataTFs = []
    values = []
    pos = 0
    while pos + 3 <= len(data):
        contextID, control, length = data[pos], data[pos + 1], data[pos + 2]
        pos += 3
        if length == 0xFF:
            if values:
                pdataTFs.append(fz.PDataTF(values))
                values = []
            continue
        values.append(fz.PresentationDataValue(contextID, control, data[pos : pos + length]))
        pos += length
    if values:
        pdataTFs.append(fz.PDataTF(values))
    return pdataTFs


def fuzzAssembler(data: bytes) -> None:
    fz.checkAssembler(pdataTFsFromPDVs(data))


def fuzzProvider(data: bytes) -> None:
    if not data:
        return
    states = fz.CONNECTED_STATES
    state = states[(data[0] & 0x0F) % len(states)]
    respond = bool(data[0] & 0x10)
    mode = data[0] >> 5 & 0x03
    fz.runProvider(state, _chunks(mode, data[1:]), respond)


def fuzzAcceptor(data: bytes) -> None:
    if not data:
        return
    fz.runAcceptor(_chunks(data[0] & 0x03, data[1:]))


FUNCTIONS = {
    "pdu": fuzzPDU,
    "command": fuzzCommand,
    "assembler": fuzzAssembler,
    "provider": fuzzProvider,
    "acceptor": fuzzAcceptor,
}


# -- seeds ----------------------------------------------------------------------------


def _samplePDUs() -> list:
    """
    One encoded PDU of each type, with every item and sub-item.
    """
    rq = fz.AAssociateRQ(
        "DICOMD",
        "FUZZER",
        [fz.PresentationContextRQ(1, fz.VERIFICATION, [fz.IMPLICIT_LE, fz.EXPLICIT_LE])],
        fz.UserInformation(
            maximumLength=16384,
            implementationClassUID="1.2.3.4",
            implementationVersionName="FUZZ",
            asynchronousOperationsWindow=(1, 1),
            roleSelections=[fz.SCPSCURoleSelection(fz.CT_IMAGE_STORAGE, True, True)],
            extendedNegotiations=[fz.SOPClassExtendedNegotiation(fz.CT_IMAGE_STORAGE, b"\x01\x00")],
            commonExtendedNegotiations=[
                fz.SOPClassCommonExtendedNegotiation(fz.CT_IMAGE_STORAGE, "1.2.840.10008.4.2", ["1.2.3"])
            ],
            userIdentityRQ=fz.UserIdentityRQ(2, True, b"user", b"secret"),
        ),
    )
    ac = fz.AAssociateAC(
        "DICOMD",
        "FUZZER",
        [fz.PresentationContextAC(1, 0, fz.IMPLICIT_LE), fz.PresentationContextAC(3, 3, "")],
        fz.UserInformation(maximumLength=16384, implementationClassUID="1.2.3.4", userIdentityAC=fz.UserIdentityAC(b"ok")),
    )
    return [
        rq.encode(),
        ac.encode(),
        fz.AAssociateRJ(1, 1, 7).encode(),
        fz.PDataTF([fz.PresentationDataValue(1, 3, fz.encodeCommand(fz.CEchoRQ(messageID=1)))]).encode(),
        fz.AReleaseRQ().encode(),
        fz.AReleaseRP().encode(),
        fz.AAbort(0, 0).encode(),
    ]


def _sampleCommands() -> list:
    from dicomd.dimse.commands import CMoveRSP

    return [fz.encodeCommand(cls()) for cls in fz.MESSAGE_TYPES] + [
        fz.encodeCommand(
            fz.CStoreRQ(
                messageID=9,
                affectedSOPClassUID=fz.CT_IMAGE_STORAGE,
                affectedSOPInstanceUID="1.2.3.4.5",
                moveOriginatorApplicationEntityTitle="MOVER",
                moveOriginatorMessageID=3,
            )
        ),
        fz.encodeCommand(
            CMoveRSP(
                messageIDBeingRespondedTo=9,
                status=0xB000,
                offendingElement=[0x00100010],
                errorComment="partly",
                numberOfRemainingSuboperations=1,
                numberOfCompletedSuboperations=2,
                numberOfFailedSuboperations=3,
                numberOfWarningSuboperations=4,
            )
        ),
    ]


def seeds(target: str) -> list:
    """
    The starting corpus of C{target}.
    """
    pdus = _samplePDUs()
    session = b"".join(fz.SESSION)
    if target == "pdu":
        return [bytes([pdu[0]]) + pdu[6:] for pdu in pdus + fz.SESSION]
    if target == "command":
        return _sampleCommands()
    if target == "assembler":
        found = []
        for command in _sampleCommands():
            pieces = fz.fragment(1, True, command, 100)
            pieces += fz.fragment(1, False, bytes(range(40)), 30)
            layout = bytearray()
            for header, data in zip(pieces[0::2], pieces[1::2]):
                layout += bytes((header[10], header[11], len(data))) + bytes(data) + b"\x00\x00\xff"
            found.append(bytes(layout))
        return found
    if target == "provider":
        found = []
        for index in range(len(fz.CONNECTED_STATES)):
            for flags in (0x00, 0x10, 0x30, 0x60):
                found.append(bytes([index | flags]) + b"".join(pdus[1:] + fz.SESSION[1:]))
            found.append(bytes([index | 0x10]) + pdus[0] + b"".join(fz.SESSION[1:]))
        return found
    if target == "acceptor":
        return [bytes([mode]) + session for mode in range(4)] + [bytes([0]) + pdu for pdu in pdus]
    raise ValueError(target)


# -- the child: one target under atheris -------------------------------------------------


def child(target: str, seconds: int, workdir: str, engine: str) -> None:
    from twisted.logger import globalLogBeginner

    directory = os.path.join(workdir, target)
    corpus = os.path.join(directory, "corpus")
    os.makedirs(corpus, exist_ok=True)
    if engine == "atheris":
        import atheris

        with atheris.instrument_imports(include=["dicomd", "tests"]):
            _loadHarness()
    else:
        _loadHarness()
    # Log events go nowhere (the acceptor harness watches for failures
    # itself) instead of piling up in the log beginner's buffer.
    globalLogBeginner.beginLoggingTo([lambda event: None], redirectStandardIO=False)
    if not os.listdir(corpus):
        for index, seed in enumerate(seeds(target)):
            with open(os.path.join(corpus, "seed-%03d" % index), "wb") as f:
                f.write(seed)
    function = FUNCTIONS[target]
    if engine == "atheris":
        atheris.Setup(
            [
                sys.argv[0],
                corpus,
                "-max_total_time=%d" % seconds,
                "-print_final_stats=1",
                "-timeout=10",
                "-rss_limit_mb=2048",
                "-max_len=70000",
                "-artifact_prefix=%s/" % directory,
            ],
            function,
        )
        atheris.Fuzz()
    else:
        _hypothesisChild(function, seconds, corpus)


def _hypothesisChild(function, seconds: int, corpus: str) -> None:
    """
    Without atheris: hypothesis with random mutations of the corpus, in
    batches until the time is up.
    """
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    seedInputs = []
    for name in sorted(os.listdir(corpus)):
        with open(os.path.join(corpus, name), "rb") as f:
            seedInputs.append(f.read())
    inputs = st.one_of(
        st.binary(max_size=2000),
        st.builds(fz.mutate, st.sampled_from(seedInputs), st.lists(fz.mutations, min_size=1, max_size=6)),
    )
    count = [0]

    @settings(
        max_examples=2000,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(inputs)
    def batch(data):
        count[0] += 1
        function(data)

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        batch()
    print("stat::number_of_executed_units: %d" % count[0], flush=True)


# -- the parent: run the targets and summarize ---------------------------------------------


def _failureOf(output: str) -> str:
    """
    A one-line name for the failure in a child's output: the Python
    exception's class and the innermost frame in dicomd (or the harness),
    so that the same bug found twice has the same name.
    """
    if "libFuzzer: timeout" in output:
        return "timeout (hang)"
    if "out-of-memory" in output:
        return "out of memory"
    lines = output.splitlines()
    exception = next(
        (line for line in reversed(lines) if re.match(r"^[\w.]+(Error|Exception|Exit)\b", line)),
        "unknown failure",
    )
    if not exception.split(":")[0].endswith("ProtocolError"):
        # The message names the event and state of a ProtocolError; other
        # messages vary with the input (positions, values).
        exception = exception.split(":")[0]
    frames = [
        re.sub(r'^File "(?:.*/)?((?:dicomd|tests)/[^"]+)", line (\d+), in (\S+)$', r"\1:\2 (\3)", line.strip())
        for line in lines
        if line.strip().startswith("File ") and ("/dicomd/" in line or "/tests/" in line)
    ]
    return "%s at %s" % (exception, frames[-1] if frames else "?")


def _dropFromCorpus(artifact: str, corpus: str) -> None:
    """
    Remove the corpus entries equal to a failing input, so that a restarted
    run does not stop on the same seed at once.
    """
    try:
        with open(artifact, "rb") as f:
            failing = f.read()
    except OSError:
        return
    for name in os.listdir(corpus):
        path = os.path.join(corpus, name)
        with open(path, "rb") as f:
            if f.read() == failing:
                os.unlink(path)


def runTarget(target: str, seconds: int, workdir: str, engine: str) -> dict:
    """
    Run C{target} for C{seconds}, restarting it after each failure.
    """
    directory = os.path.join(workdir, target)
    os.makedirs(directory, exist_ok=True)
    logPath = os.path.join(directory, "log.txt")
    started = time.monotonic()
    executed = 0
    failures = {}
    runs = 0
    with open(logPath, "w") as log:
        while True:
            left = int(seconds - (time.monotonic() - started))
            if left < 5:
                break
            runs += 1
            process = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--child", target, "--seconds", str(left),
                 "--workdir", workdir, "--engine", engine],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
            output = process.stdout
            log.write(output)
            log.flush()
            found = re.findall(r"stat::number_of_executed_units:\s*(\d+)", output)
            if found:
                executed += int(found[-1])
            else:
                # A crash ends the run before the final stats: take the
                # last progress line's count.
                progress = re.findall(r"^#(\d+)\s", output, re.MULTILINE)
                if progress:
                    executed += int(progress[-1])
            if process.returncode != 0:
                name = _failureOf(output)
                artifacts = re.findall(r"Test unit written to (\S+)", output)
                for artifact in artifacts:
                    _dropFromCorpus(artifact, os.path.join(directory, "corpus"))
                    if artifact not in failures.setdefault(name, []):
                        failures[name].append(artifact)
                if not artifacts:
                    failures.setdefault(name, []).append("(no artifact)")
                if not artifacts or len(failures) > 20:
                    # Not a failing input (the harness itself broke), or
                    # too many to be worth going on.
                    break
            else:
                break
    corpusSize = len(os.listdir(os.path.join(directory, "corpus")))
    return {
        "target": target,
        "seconds": round(time.monotonic() - started),
        "executed": executed,
        "runs": runs,
        "corpus": corpusSize,
        "failures": failures,
        "log": logPath,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", metavar="TARGET", help="any of %s (default: all)" % ", ".join(TARGETS))
    parser.add_argument("--seconds", type=int, default=120, help="time per target (default 120)")
    parser.add_argument("--workdir", default="/tmp/dicomd-fuzz", help="corpora, crashes and logs")
    parser.add_argument("--engine", choices=("atheris", "hypothesis"), default=None)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    unknown = [target for target in options.targets if target not in TARGETS]
    if unknown:
        parser.error("unknown target %s; the targets are %s" % (", ".join(unknown), ", ".join(TARGETS)))
    engine = options.engine
    if engine is None:
        try:
            import atheris  # noqa: F401

            engine = "atheris"
        except ImportError:
            print("atheris is not installed (pip install atheris): using hypothesis", file=sys.stderr)
            engine = "hypothesis"
    workdir = os.path.abspath(options.workdir)
    if options.child:
        child(options.child, options.seconds, workdir, engine)
        return 0
    results = []
    for target in options.targets or TARGETS:
        print("fuzzing %s for %d s with %s..." % (target, options.seconds, engine), flush=True)
        result = runTarget(target, options.seconds, workdir, engine)
        results.append(result)
        print(
            "  %(target)s: %(executed)d inputs in %(seconds)d s, corpus %(corpus)d, %(runs)d run(s)" % result,
            flush=True,
        )
        for name, artifacts in result["failures"].items():
            print("  FAILURE %s\n    inputs: %s" % (name, " ".join(artifacts)), flush=True)
    total = sum(result["executed"] for result in results)
    failed = sum(len(result["failures"]) for result in results)
    print("total: %d inputs, %d distinct failures (logs under %s)" % (total, failed, workdir))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
