"""
C{dicomd storescu}: a Storage SCU (PS3.4 Annex B) with DCMTK storescu's
command line.

It differs from DCMTK's storescu in documented ways (C{docs/storescu.md}):
presentation contexts are proposed for the SOP classes found in the files
(DCMTK's C{-R}, always on), not for a fixed list of 64 classes; files can
go over several associations at once (C{--associations}), and several at
a time on each where the peer grants an asynchronous operations window
(C{--async-ops}); the exit status
is non-zero whenever a file failed, with C{--no-halt} too; files that are
not DICOM are skipped with a warning.  The DCMTK options it does not honour
are refused with a usage error naming them.
"""

import fnmatch
import os
from typing import List

from twisted.internet import defer
from twisted.logger import Logger, LogLevel

from dicomd.cli import logs
from dicomd.cli.common import (
    CommandFileCommandLine,
    UnsupportedOptions,
    clientEndpoint,
    commandPreamble,
    frontDoorGeneralOptions,
    preferredSyntaxOptions,
    preferredTransferSyntax,
    tlsOptionGroup,
    tlsSettings,
    tlsUsageError,
)
from dicomd.cli.options import Option, Parameter, UsageError, aeTitle, integer, string
from dicomd.dimse import status as _status
from dicomd.errors import AssociationAborted, AssociationRejected
from dicomd.net.requestor import connect
from dicomd.storage.scu import (
    DEFAULT_COMPRESSION_LEVEL,
    READ_DATA_SET,
    READ_FILE_ONLY,
    READ_FILE_OR_DATA_SET,
    NotDICOM,
    readDicomFile,
)
from dicomd.storage.sender import isStored, sendFiles
from dicomd.ul.pdu import UserIdentityRQ

log = Logger(namespace="storescu")

#: Exit statuses besides 0 and a refused C-STORE's status high byte, as
#: DCMTK's storescu: 1 when nothing could start (no association, unreadable
#: input in halt mode), 10 for a failure that has no status (an unsendable
#: file, an association that ended under a C-STORE), 21 without input.
EXIT_FATAL = 1
EXIT_NETWORK_ERROR = 10
EXIT_NO_INPUT_FILES = 21

#: User Identity Negotiation types (PS3.7 D.3.3.7) of -usr, -kt, --saml,
#: --jwt; -pwd and -epw turn "user" into "user and passcode".
IDENTITY_USER = 1
IDENTITY_USER_PASSCODE = 2
IDENTITY_KERBEROS = 3
IDENTITY_SAML = 4
IDENTITY_JWT = 5

_UNSUPPORTED = UnsupportedOptions()




def _identity(identityType: int):
    def convert(text: str):
        return (identityType, text)

    convert.kind = "string"
    return convert


_INVENT = "dicomd storescu sends files as they are and never rewrites their identifying attributes"

COMMAND_LINE = CommandFileCommandLine(
    "dicomd storescu",
    "DICOM storage (C-STORE) SCU",
    [
        Parameter("peer", "hostname of DICOM peer", required=False),
        Parameter("port", "tcp/ip port number of peer", integer(1, 65535), required=False),
        Parameter("dcmfile-in", "DICOM file or directory to be transmitted", repeated=True, required=False),
    ],
    [
        frontDoorGeneralOptions(_UNSUPPORTED, [Option(("+v", "--verbose-pc"), "verbosePC", "show presentation contexts in verbose mode (implies -v)")]),
        (
            "input options",
            [
                Option(("+f", "--read-file"), "readMode", "read file format or data set (default)", const=READ_FILE_OR_DATA_SET),
                Option(("+fo", "--read-file-only"), "readMode", "read file format only", const=READ_FILE_ONLY),
                Option(("-f", "--read-dataset"), "readMode", "read data set without file meta information", const=READ_DATA_SET),
                Option(("+sd", "--scan-directories"), "scanDirectories", "scan directories for input files (dcmfile-in)"),
                Option(
                    ("+sp", "--scan-pattern"),
                    "scanPattern",
                    "pattern for filename matching (wildcards, only with --scan-directories)",
                    (("p]attern", string),),
                ),
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
                Option(
                    ("-xf", "--config-file"),
                    "configFile",
                    "use profile p from config file f",
                    (("f]ilename", string), ("p]rofile", string)),
                ),
            ]
            + preferredSyntaxOptions("-", "propose", "proposed", "propose")
            + [
                Option(("-xi", "--propose-implicit"), "proposed", "propose implicit VR little endian TS only", const="+xi"),
                Option(("-R", "--required"), "required", "propose only required presentation contexts (always on)"),
                Option(("+C", "--combine"), "combine", "combine proposed transfer syntaxes"),
                Option(("+u", "--enable-new-vr"), "newVRs", "enable support for new VRs (UN/UT) (default)"),
                _UNSUPPORTED.option(
                    ("-u", "--disable-new-vr"),
                    "disable support for new VRs, convert to OB",
                    "files are sent as they are, without re-encoding their value representations",
                ),
                Option(
                    ("+cl", "--compression-level"),
                    "compressionLevel",
                    "0=uncompressed, 1=fastest, 9=best compression (default: 6; only with -xd or -xf)",
                    (("l]evel", integer(0, 9)),),
                ),
                Option(("-usr", "--user"), "identity", "authenticate using user name u", (("u]ser name", _identity(IDENTITY_USER)),)),
                Option(("-pwd", "--password"), "userPassword", "authenticate using password p (only with --user)", (("p]assword", string),)),
                Option(("-epw", "--empty-password"), "userPassword", "send empty password (only with --user)", const=""),
                Option(("-kt", "--kerberos"), "identity", "read kerberos ticket from file f", (("f]ilename", _identity(IDENTITY_KERBEROS)),)),
                Option(("--saml",), "identity", "read SAML request from file f", (("f]ilename", _identity(IDENTITY_SAML)),)),
                Option(("--jwt",), "identity", "read JWT data from file f", (("f]ilename", _identity(IDENTITY_JWT)),)),
                Option(("-rsp", "--pos-response"), "positiveResponse", "expect positive response"),
                Option(("-to", "--timeout"), "timeout", "timeout for connection requests (default: 30)", (("s]econds", integer(1)),)),
                Option(("-ts", "--socket-timeout"), "socketTimeout", "timeout for network socket (0 for none, default: 60)", (("s]econds", integer(0)),)),
                Option(("-ta", "--acse-timeout"), "acseTimeout", "timeout for ACSE messages (default: 30)", (("s]econds", integer(1)),)),
                Option(("-td", "--dimse-timeout"), "dimseTimeout", "timeout for DIMSE messages (default: unlimited)", (("s]econds", integer(1)),)),
                Option(("-pdu", "--max-pdu"), "maxPDU", "set max receive pdu to n bytes (default: 16384)", (("n]umber of bytes", integer(4096, 131072)),)),
                Option(("--max-send-pdu",), "maxSendPDU", "restrict max send pdu to n bytes", (("n]umber of bytes", integer(4096, 131072)),)),
                Option(("--repeat",), "repeat", "repeat n times", (("n]umber", integer(1)),)),
                Option(("--abort",), "abort", "abort association instead of releasing it"),
                Option(("-nh", "--no-halt"), "noHalt", "do not halt if unsuccessful store encountered (default: do halt)"),
                Option(("-up", "--uid-padding"), "uidPadding", "silently correct space-padded UIDs (always on)"),
                _UNSUPPORTED.option(("+II", "--invent-instance"), "invent a new SOP instance UID for every image sent", _INVENT),
                _UNSUPPORTED.option(("+IR", "--invent-series"), "invent a new series UID after n images", _INVENT, (("n]umber", string),)),
                _UNSUPPORTED.option(("+IS", "--invent-study"), "invent a new study UID after n series", _INVENT, (("n]umber", string),)),
                _UNSUPPORTED.option(("+IP", "--invent-patient"), "invent a new patient after n studies", _INVENT, (("n]umber", string),)),
                Option(
                    ("--associations",),
                    "associations",
                    "send over n associations at once (dicomd only, default: 1)",
                    (("n]umber", integer(1, 64)),),
                ),
                Option(
                    ("--async-ops",),
                    "asyncOps",
                    "propose an asynchronous operations window of n C-STOREs (dicomd only, default: 1, none)",
                    (("n]umber", integer(1, 65535)),),
                ),
            ],
        ),
        tlsOptionGroup(_UNSUPPORTED, server=False),
    ],
    defaults={
        "aetitle": "STORESCU",
        "call": "ANY-SCP",
        "acseTimeout": 30,
        "maxPDU": 16384,
        "repeat": 1,
        "associations": 1,
        "asyncOps": 1,
        "socketTimeout": 60,
        "readMode": READ_FILE_OR_DATA_SET,
    },
    helpWithoutArguments=True,
)


def validate(values) -> None:
    """
    Refuse what storescu refuses, and every option dicomd does not honour,
    naming it; read the files the options name (C{-xf}, the TLS key and
    certificates, the identity file) so that a mistake is reported before
    anything is sent.
    """
    _UNSUPPORTED.check(values)
    if values.get("listCiphers"):
        return
    for name in ("peer", "port"):
        if values.get(name) is None:
            raise UsageError("missing parameter %s" % (name,))
    if not values.get("dcmfile-in"):
        raise UsageError("missing parameter dcmfile-in")
    if values.get("verbosePC"):
        # DCMTK refuses +v without verbose mode; we turn verbose mode on.
        values["verbose"] = True
    if values.get("scanPattern") is not None and not values.get("scanDirectories"):
        raise UsageError("+sp (--scan-pattern) is only allowed with +sd (--scan-directories)")
    if values.get("recurse") and not values.get("scanDirectories"):
        raise UsageError("+r (--recurse) is only allowed with +sd (--scan-directories)")
    if values.get("configFile"):
        if values.get("proposed") not in (None, "+x="):
            raise UsageError("-xf (--config-file) cannot be combined with a --propose-... option")
        for dest, spelling in (("required", "-R (--required)"), ("combine", "+C (--combine)")):
            if values.get(dest):
                raise UsageError("-xf (--config-file) cannot be combined with %s" % (spelling,))
        values["profile"] = _readProfile(*values["configFile"])
    if values.get("compressionLevel") is not None and not (
        values.get("configFile") or values.get("proposed") == "+xd"
    ):
        raise UsageError("+cl (--compression-level) is only allowed with -xd (--propose-deflated) or -xf (--config-file)")
    identity = values.get("identity")
    if values.get("userPassword") is not None and (identity is None or identity[0] != IDENTITY_USER):
        raise UsageError("-pwd (--password) and -epw (--empty-password) are only allowed with -usr (--user)")
    if values.get("positiveResponse") and identity is None:
        raise UsageError("-rsp (--pos-response) is only allowed with --user, --kerberos, --saml or --jwt")
    if identity is not None:
        values["userIdentity"] = _userIdentity(values)
    if values.get("tls"):
        try:
            values["tlsOptions"] = tlsSettings(values).certificateOptions(isServer=False)
        except ValueError as e:
            raise tlsUsageError(e)


def _readProfile(path: str, name: str):
    from dicomd.asconfig import AsConfigError, readProfiles

    try:
        return readProfiles(path, requestor=True).profile(name)
    except AsConfigError as e:
        raise UsageError("-xf (--config-file): %s" % (e,))
    except OSError as e:
        raise UsageError("-xf (--config-file): cannot read %s: %s" % (path, e.strerror))


def _userIdentity(values) -> UserIdentityRQ:
    """
    The User Identity Negotiation request of C{-usr}/C{-pwd}, C{-kt},
    C{--saml} or C{--jwt}; the last three read their file (at most 65535
    bytes are sent, as DCMTK).

    @raise UsageError: the file cannot be read or is empty.
    """
    identityType, value = values["identity"]
    positive = bool(values.get("positiveResponse"))
    if identityType == IDENTITY_USER:
        password = values.get("userPassword")
        if password is None:
            return UserIdentityRQ(IDENTITY_USER, positive, value.encode("utf-8"))
        return UserIdentityRQ(IDENTITY_USER_PASSCODE, positive, value.encode("utf-8"), password.encode("utf-8"))
    try:
        with open(value, "rb") as f:
            content = f.read(0xFFFF)
    except OSError as e:
        raise UsageError("cannot read the Kerberos, SAML or JWT file %s: %s" % (value, e.strerror))
    if not content:
        raise UsageError("the Kerberos, SAML or JWT file %s is empty" % (value,))
    return UserIdentityRQ(identityType, positive, content)


def inputFiles(values) -> List[str]:
    """
    The files named on the command line, directories scanned as C{+sd},
    C{+r} and C{+sp} say, in order (a directory's files sorted by name).
    """
    paths = []
    pattern = values.get("scanPattern")
    for argument in values["dcmfile-in"]:
        if not os.path.isdir(argument):
            paths.append(argument)
            continue
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
    return paths


class _NoInput(Exception):
    """
    A named file cannot be read and the job halts on errors.
    """


def readInputFiles(values) -> list:
    """
    Read the input files' meta information: files that are not DICOM are
    skipped with a warning; files that cannot be read are skipped with a
    warning with C{--no-halt}, and stop everything without it (as DCMTK).

    @raise _NoInput: a file cannot be read and C{--no-halt} is not set.
    """
    files = []
    for path in inputFiles(values):
        try:
            files.append(readDicomFile(path, values["readMode"]))
        except NotDICOM as e:
            log.warn("{why}, ignoring file", why=str(e))
        except OSError as e:
            if not values.get("noHalt"):
                raise _NoInput("cannot access file: %s: %s" % (path, e.strerror))
            log.warn("cannot access file: {path}: {why}, ignoring file", path=path, why=e.strerror)
    return files


class _Requestor:
    """
    Opens the associations of one run with the command line's parameters,
    logging them as storescu does.
    """

    def __init__(self, reactor, values):
        self._reactor = reactor
        self._values = values
        self._endpoint = clientEndpoint(reactor, values, values["peer"], values["port"])
        profile = values.get("profile")
        self._roleSelections = profile.roleSelections if profile is not None else ()
        self._extendedNegotiations = profile.extendedNegotiations if profile is not None else ()
        self._contextLog = log.info if values.get("verbosePC") else log.debug

    def connect(self, proposals):
        values = self._values
        self._contextLog(
            "Request Parameters: {count} presentation contexts:\n{contexts}",
            count=len(proposals),
            contexts="\n".join(
                "  %d: %s: %s" % (2 * index + 1, abstractSyntax, ", ".join(syntaxes))
                for index, (abstractSyntax, syntaxes) in enumerate(proposals)
            ),
        )
        log.info("Requesting Association")
        d = connect(
            self._endpoint,
            calledAETitle=values["call"],
            callingAETitle=values["aetitle"],
            presentationContexts=proposals,
            roleSelections=self._roleSelections,
            extendedNegotiations=self._extendedNegotiations,
            maximumLength=values["maxPDU"],
            maximumSendLength=values.get("maxSendPDU"),
            userIdentity=values.get("userIdentity"),
            asynchronousOperations=values["asyncOps"],
            acseTimeout=values["acseTimeout"],
            dimseTimeout=values.get("dimseTimeout"),
            idleTimeout=values["socketTimeout"] or None,
            reactor=self._reactor,
        )
        return d.addCallback(self._accepted)

    def _accepted(self, association):
        self._contextLog(
            "Association Parameters Negotiated: {count} presentation contexts accepted:\n{contexts}",
            count=len(association.contexts),
            contexts="\n".join(
                "  %d: %s: %s" % (context.contextID, context.abstractSyntax, context.transferSyntax)
                for context in sorted(association.contexts.values(), key=lambda context: context.contextID)
            ),
        )
        identity = self._values.get("userIdentity")
        if (
            identity is not None
            and identity.positiveResponseRequested
            and identity.identityType in (IDENTITY_USER, IDENTITY_USER_PASSCODE)
            and association.protocol.accept.userInformation.userIdentityAC is None
        ):
            association.abort()
            raise AssociationAborted("User Identity Negotiation failed: positive response requested but none received")
        log.info("Association Accepted (Max Send PDV: {pdv})", pdv=association.fragmentLength)
        if self._values["asyncOps"] != 1:
            window = association.operationsWindow
            log.info(
                "Asynchronous operations window: {window}",
                window="no limit" if window is None else "%d C-STOREs" % (window,) if window > 1 else "none granted, one C-STORE at a time",
            )
        return association


@defer.inlineCallbacks
def run(reactor, values):
    """
    Send the files; the L{Deferred} fires with the exit status.
    """
    done = commandPreamble(values)
    if done is not None:
        return done
    try:
        files = readInputFiles(values)
    except _NoInput as e:
        log.critical("{why}", why=str(e))
        return EXIT_FATAL
    if not files:
        log.critical("no input files to be sent")
        return EXIT_NO_INPUT_FILES
    requestor = _Requestor(reactor, values)
    outcomes = {}
    progress = logs.shows(values, LogLevel.info)

    def onResult(dicomFile, result, reason):
        stored = reason is None and isStored(result)
        outcomes[dicomFile.path] = outcomes.get(dicomFile.path, True) and stored
        if reason is not None:
            log.error("Store Failed, file: {path}: {why}", path=dicomFile.path, why=reason)
        elif stored:
            if progress:
                log.info("Sent {path} ({size} bytes): {status}", path=dicomFile.path, size=result.size, status=_status.describe(result.status))
        else:
            log.error("Store Failed, file: {path}: {status}", path=dicomFile.path, status=_status.describe(result.status))

    profile = values.get("profile")
    proposed = values.get("proposed")
    report = yield sendFiles(
        requestor.connect,
        files,
        proposals=profile.presentationContexts if profile is not None else None,
        preferred=preferredTransferSyntax(proposed) if proposed else None,
        combine=bool(values.get("combine")),
        associations=values["associations"],
        repeat=values["repeat"],
        halt=not values.get("noHalt"),
        abort=bool(values.get("abort")),
        compressionLevel=_compressionLevel(values),
        onResult=onResult,
        reactor=reactor,
    )
    for error in report.associationErrors:
        if isinstance(error, AssociationRejected):
            log.critical("Association Rejected: {why}", why=str(error))
        else:
            log.critical("Association Request Failed: {why}", why=str(error))
    if values.get("rename"):
        _rename(outcomes)
    if report.succeeded:
        log.info("{summary}", summary=report.summary())
        return 0
    log.warn("{summary}", summary=report.summary())
    return exitStatus(report)


def _compressionLevel(values) -> int:
    level = values.get("compressionLevel")
    return DEFAULT_COMPRESSION_LEVEL if level is None else level


def _rename(outcomes) -> None:
    """
    C{+rn}: append C{.done} to each file sent and C{.bad} to each file that
    failed, once all its C{--repeat} sends are over.
    """
    for path, stored in outcomes.items():
        newPath = path + (".done" if stored else ".bad")
        try:
            os.rename(path, newPath)
        except OSError as e:
            log.warn("cannot rename file '{path}' to '{newPath}': {why}", path=path, newPath=newPath, why=e.strerror)


def exitStatus(report) -> int:
    """
    The exit status of a run that did not send everything: the high byte
    of the last refused C-STORE's status (as DCMTK), else 10 for other
    failed C-STOREs, else 1 (no association could be established).
    """
    if report.failures:
        status = report.failures[-1].status
        if status is not None:
            return max(1, status >> 8)
        return EXIT_NETWORK_ERROR
    if report.sent == 0:
        return EXIT_FATAL
    return EXIT_NETWORK_ERROR
