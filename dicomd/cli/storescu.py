"""
C{dicomd storescu}: a Storage SCU (PS3.4 Annex B) with DCMTK storescu's
command line.

It differs from DCMTK's storescu in three documented ways: presentation
contexts are proposed for the SOP classes found in the files (DCMTK's
C{-R}), not for a fixed list of 64 classes; files can go over several
associations at once (C{--associations}); and the exit status is non-zero
whenever a file failed, with C{--no-halt} too.
"""

import fnmatch
import os
from typing import List

from twisted.internet import defer
from twisted.logger import Logger

from dicomd.cli.common import clientEndpoint, preferredSyntaxOptions, preferredTransferSyntax, tlsOptions
from dicomd.cli.options import CommandLine, Option, Parameter, UsageError, aeTitle, generalOptions, integer, string
from dicomd.dimse import status as _status
from dicomd.net.association import AssociationError
from dicomd.net.requestor import connect
from dicomd.storage.scu import NotDICOM, readFileMeta
from dicomd.storage.sender import sendFiles
from dicomd.ul.pdu import UserIdentityRQ

log = Logger(namespace="storescu")

EXIT_NO_INPUT_FILES = 21
EXIT_NETWORK_ERROR = 10

COMMAND_LINE = CommandLine(
    "storescu",
    "DICOM storage (C-STORE) SCU",
    [
        Parameter("peer", "hostname of DICOM peer"),
        Parameter("port", "tcp/ip port number of peer", integer(1, 65535)),
        Parameter("dcmfile-in", "DICOM file or directory to be transmitted", repeated=True),
    ],
    [
        generalOptions(),
        (
            "input options",
            [
                Option(("+f", "--read-file"), "readMode", "read file format or data set (default)", const="file"),
                Option(("+fo", "--read-file-only"), "readMode", "read file format only", const="file"),
                Option(("+sd", "--scan-directories"), "scanDirectories", "scan directories for input files (dcmfile-in)"),
                Option(("+sp", "--scan-pattern"), "scanPattern", "pattern for filename matching (wildcards)", (("p]attern", string),)),
                Option(("-r", "--no-recurse"), "recurse", "do not recurse within directories (default)", const=False),
                Option(("+r", "--recurse"), "recurse", "recurse within specified directories"),
                Option(("-rn", "--no-rename"), "rename", "do not rename processed files (default)", const=False),
                Option(("+rn", "--rename"), "rename", "append .done/.bad to processed files"),
            ],
        ),
        (
            "network options",
            [
                Option(("-aet", "--aetitle"), "aetitle", "set my calling AE title (default: STORESCU)", (("a]etitle", aeTitle),)),
                Option(("-aec", "--call"), "call", "set called AE title of peer (default: ANY-SCP)", (("a]etitle", aeTitle),)),
            ]
            + preferredSyntaxOptions("-", "propose", "proposed", "propose")
            + [
                Option(("-xi", "--propose-implicit"), "proposed", "propose implicit VR little endian TS only", const="+xi"),
                Option(("-R", "--required"), "required", "propose only required presentation contexts (always on)"),
                Option(("+C", "--combine"), "combine", "combine proposed transfer syntaxes"),
                Option(("-usr", "--user"), "user", "authenticate using user name u", (("u]ser name", string),)),
                Option(("-pwd", "--password"), "userPassword", "authenticate using password p", (("p]assword", string),)),
                Option(("-epw", "--empty-password"), "userPassword", "send empty password", const=""),
                Option(("-rsp", "--pos-response"), "positiveResponse", "expect positive response"),
                Option(("-to", "--timeout"), "timeout", "timeout for connection requests", (("s]econds", integer(1)),)),
                Option(("-ts", "--socket-timeout"), "socketTimeout", "timeout for network socket (0 for none)", (("s]econds", integer(0)),)),
                Option(("-ta", "--acse-timeout"), "acseTimeout", "timeout for ACSE messages (default: 30)", (("s]econds", integer(1)),)),
                Option(("-td", "--dimse-timeout"), "dimseTimeout", "timeout for DIMSE messages", (("s]econds", integer(1)),)),
                Option(("-pdu", "--max-pdu"), "maxPDU", "set max receive pdu to n bytes (default: 16384)", (("n]umber of bytes", integer(4096, 131072)),)),
                Option(("--max-send-pdu",), "maxSendPDU", "restrict max send pdu to n bytes", (("n]umber of bytes", integer(4096, 131072)),)),
                Option(("--repeat",), "repeat", "repeat n times", (("n]umber", integer(1)),)),
                Option(("--abort",), "abort", "abort association instead of releasing it"),
                Option(("-nh", "--no-halt"), "noHalt", "do not halt if unsuccessful store encountered (default: do halt)"),
                Option(("--associations",), "associations", "send over n associations at once (default: 1)", (("n]umber", integer(1, 64)),)),
            ],
        ),
        tlsOptions(server=False),
    ],
    defaults={"aetitle": "STORESCU", "call": "ANY-SCP", "acseTimeout": 30, "maxPDU": 16384, "repeat": 1, "associations": 1, "socketTimeout": 60},
)


def inputFiles(values) -> List[str]:
    """
    The files named on the command line, directories scanned as C{+sd},
    C{+r} and C{+sp} say.

    @raise UsageError: nothing to send.
    """
    paths = []
    pattern = values.get("scanPattern")
    for argument in values["dcmfile-in"]:
        if os.path.isdir(argument):
            if not values.get("scanDirectories"):
                log.warn("ignoring directory because option --scan-directories is not set: {path}", path=argument)
                continue
            for directory, subdirectories, names in os.walk(argument):
                subdirectories.sort()
                if not values.get("recurse"):
                    subdirectories[:] = []
                paths.extend(
                    os.path.join(directory, name)
                    for name in sorted(names)
                    if pattern is None or fnmatch.fnmatch(name, pattern)
                )
        else:
            paths.append(argument)
    return paths


def _userIdentity(values):
    user = values.get("user")
    if user is None:
        return None
    password = values.get("userPassword")
    return UserIdentityRQ(
        1 if password is None else 2,
        bool(values.get("positiveResponse")),
        user.encode("utf-8"),
        (password or "").encode("utf-8"),
    )


@defer.inlineCallbacks
def run(reactor, values):
    """
    Send the files; the L{Deferred} fires with the exit status.
    """
    files = []
    for path in inputFiles(values):
        try:
            files.append(readFileMeta(path))
        except NotDICOM as e:
            log.warn("{why}, ignoring file", why=str(e))
        except OSError as e:
            log.warn("cannot access file {path}: {why}, ignoring file", path=path, why=e.strerror)
    if not files:
        log.critical("no input files to be sent")
        return EXIT_NO_INPUT_FILES
    endpoint = clientEndpoint(reactor, values, values["peer"], values["port"])
    preferred = values.get("proposed")

    def connectAssociation(proposals):
        log.info("Requesting Association")
        d = connect(
            endpoint,
            calledAETitle=values["call"],
            callingAETitle=values["aetitle"],
            presentationContexts=proposals,
            maximumLength=values["maxPDU"],
            maximumSendLength=values.get("maxSendPDU"),
            userIdentity=_userIdentity(values),
            acseTimeout=values["acseTimeout"],
            dimseTimeout=values.get("dimseTimeout"),
            idleTimeout=values["socketTimeout"] or None,
            reactor=reactor,
        )

        def accepted(association):
            log.info("Association Accepted (Max Send PDV: {pdv})", pdv=association.fragmentLength)
            return association

        return d.addCallback(accepted)

    def onResult(dicomFile, result, reason):
        if reason is None:
            log.info(
                "Sent {path}: {status}", path=dicomFile.path, status=_status.describe(result.status)
            )
        else:
            log.error("Store Failed, file: {path}: {why}", path=dicomFile.path, why=reason)
        if values.get("rename") and os.path.exists(dicomFile.path):
            ok = reason is None and _status.category(result.status) in (_status.Category.SUCCESS, _status.Category.WARNING)
            os.rename(dicomFile.path, dicomFile.path + (".done" if ok else ".bad"))

    try:
        report = yield sendFiles(
            connectAssociation,
            files,
            preferred=preferredTransferSyntax(preferred) if preferred else None,
            combine=bool(values.get("combine")),
            associations=values["associations"],
            repeat=values["repeat"],
            halt=not values.get("noHalt"),
            abort=bool(values.get("abort")),
            onResult=onResult,
            reactor=reactor,
        )
    except AssociationError as e:
        log.critical("Association Request Failed: {why}", why=str(e))
        return EXIT_NETWORK_ERROR
    if not report.failed:
        log.info("{summary}", summary=report.summary())
        return 0
    log.warn("{summary}", summary=report.summary())
    return _exitStatus(report)


def _exitStatus(report) -> int:
    """
    As DCMTK: the high byte of the last failure status, or 10 when the
    failure was not a status (a network error, an unsendable file).
    """
    path, reason = report.failures[-1]
    if reason.startswith("0x"):
        return max(1, int(reason[2:6], 16) >> 8)
    return EXIT_NETWORK_ERROR


def validate(values) -> None:
    if values.get("userPassword") is not None and values.get("user") is None:
        raise UsageError("--password and --empty-password need --user")
