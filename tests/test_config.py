"""
Tests for L{dicomd.config}: the daemon's TOML configuration file, every key
of C{etc/dicomd.toml}, the defaults, paths relative to the file, and every
error, whose message must name the file, the right line and the key; and
for the C{twistd dicomd} options that override the file (L{dicomd.tap}).
"""

import os
import re
import shutil
import textwrap

from twisted.python import usage
from twisted.trial import unittest

from dicomd import tap
from dicomd.archive.dcmqrcfg import Quota
from dicomd.archive.matching import PATIENT_ROOT, PATIENT_STUDY_ONLY, STUDY_ROOT
from dicomd.config import (
    DEFAULT_DIRECTORY,
    ConfigError,
    DaemonConfig,
    EntityConfig,
    Limits,
    PeerConfig,
    checkEndpoint,
    readConfig,
)
from dicomd.storage import naming
from dicomd.storage.receiver import SORT_PATIENT_NAME, SORT_STUDY_UID, SORT_TIMESTAMP, StorageOptions
from dicomd.ul.negotiation import ACCEPTOR_PREFERENCES
from dicomd.archive.queue import RetryPolicy
from dicomd.archive.routing import ON_RECEPTION, Route, RouteMatch
from tests.certificates import writeTestPKI
from tests.support import REPO_ROOT

EXAMPLE = os.path.join(str(REPO_ROOT), "etc", "dicomd.toml")
ASCONFIG = os.path.join(str(REPO_ROOT), "etc", "storescp-asconfig.cfg")

#: The lines of etc/dicomd.toml that are commented-out examples of keys
#: (all but the profile, which excludes transfer-syntaxes).
_COMMENTED_KEY = re.compile(r"^# ((?!profile)[a-z-]+ = .*|\[\[(peer|ae\.forward)\]\])$")


class _ConfigFileMixin:
    """
    Writes configuration files into a fresh directory and reads them.
    """

    def setUp(self):
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)

    def write(self, text: str, name: str = "dicomd.toml") -> str:
        path = os.path.join(self.directory, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(textwrap.dedent(text).lstrip("\n"))
        return path

    def read(self, text: str) -> DaemonConfig:
        return readConfig(self.write(text))

    def assertConfigError(self, text: str, line, key: str, fragment: str) -> ConfigError:
        """
        Reading C{text} fails with a L{ConfigError} naming the file, C{line}
        and C{key}, whose message contains C{fragment}.
        """
        path = self.write(text)
        error = self.assertRaises(ConfigError, readConfig, path)
        self.assertEqual((error.path, error.line, error.key), (path, line, key), str(error))
        where = "%s, line %d: " % (path, line) if line else path + ": "
        self.assertTrue(str(error).startswith(where + (key + ": " if key else "")), str(error))
        self.assertIn(fragment, str(error))
        return error


class ExampleFileTests(_ConfigFileMixin, unittest.TestCase):
    """
    C{etc/dicomd.toml}, the commented example, reads into the documented
    values.
    """

    def test_everyKey(self):
        """
        Every key the example sets has the value its comment gives.
        """
        config = readConfig(EXAMPLE)
        self.assertEqual(config.path, EXAMPLE)
        self.assertEqual(config.listen, ("tcp:11112",))
        self.assertIsNone(config.status)
        self.assertIsNone(config.database)
        self.assertTrue(config.answerAnyCalledAETitle)
        self.assertEqual(
            config.limits,
            Limits(
                maxAssociations=128,
                maxAssociationsPerHost=64,
                maxPendingConnections=256,
                maxPDU=131072,
                acseTimeout=30.0,
                dimseTimeout=None,
                idleTimeout=60.0,
                shutdownGrace=30.0,
            ),
        )
        self.assertEqual(config.peers, [])
        [entity] = config.entities
        self.assertEqual(entity.title, "DICOMD")
        self.assertEqual(entity.access, "RW")
        self.assertTrue(entity.readable)
        self.assertTrue(entity.writable)
        self.assertEqual(entity.transferSyntaxes, ACCEPTOR_PREFERENCES["+x="])
        self.assertFalse(entity.promiscuous)
        self.assertIsNone(entity.profile)
        self.assertTrue(entity.queryRetrieve)
        self.assertTrue(entity.get)
        self.assertEqual(entity.models, (PATIENT_ROOT, STUDY_ROOT))
        self.assertIsNone(entity.callingAETitles)
        self.assertIsNone(entity.hosts)
        self.assertIsNone(entity.quota)
        self.assertEqual(
            entity.storage,
            StorageOptions(
                outputDirectory=os.path.abspath("dicomd-data"),
                ignore=False,
                fileNames=naming.FileNameScheme.INSTANCE_UID,
                extension="",
                sortMode=SORT_STUDY_UID,
                sortPrefix="",
                execOnReception=None,
                execOnEndOfStudy=None,
                renameOnEndOfStudy=False,
                endOfStudyTimeout=None,
                execSync=False,
                sync=False,
            ),
        )

    def test_sameAsDefaults(self):
        """
        The example's values are the built-in defaults: an empty file in
        the same directory reads into the same configuration.
        """
        shutil.copy(EXAMPLE, os.path.join(self.directory, "example.toml"))
        example = readConfig(os.path.join(self.directory, "example.toml"))
        empty = self.read("")
        self.assertEqual(example.entities, empty.entities)
        self.assertEqual(example.limits, empty.limits)
        self.assertEqual((example.listen, example.status, example.database), (empty.listen, empty.status, empty.database))
        self.assertEqual(example.answerAnyCalledAETitle, empty.answerAnyCalledAETitle)

    def test_commentedKeys(self):
        """
        The example's commented-out keys, uncommented, read into the values
        they show.
        """
        pki = writeTestPKI(self.directory)
        with open(EXAMPLE, encoding="utf-8") as f:
            original = [line.rstrip("\n") for line in f]
        lines = [_COMMENTED_KEY.sub(r"\1", line) for line in original]
        uncommented = [line for line, before in zip(lines, original) if line != before]
        self.assertEqual(len(uncommented), 18, "\n".join(uncommented))
        path = os.path.join(self.directory, "dicomd.toml")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        config = readConfig(path)
        self.assertEqual(config.status, "tcp:8080:interface=127.0.0.1")
        self.assertEqual(config.database, os.path.abspath(os.path.join("dicomd-data", ".dicomd-index.sqlite")))
        self.assertEqual(config.node, "gateway-1")
        [entity] = config.entities
        self.assertEqual(entity.callingAETitles, ("CT01", "MR02", "PACS"))
        self.assertEqual([str(host) for host in entity.hosts], ["127.0.0.1/32", "10.1.0.0/16", "modality.example.org"])
        self.assertEqual(entity.quota, Quota(1000, 8 << 30))
        self.assertEqual(entity.storage.execOnReception, "logger -t dicomd stored #f from #a")
        self.assertEqual(entity.storage.execOnEndOfStudy, "/usr/local/bin/route-study #p")
        self.assertEqual(entity.storage.endOfStudyTimeout, 60.0)
        self.assertEqual(entity.routes, (Route("PACS", ON_RECEPTION, RouteMatch(modalities=("CT", "MR"), callingAETitles=("CT01",))),))
        [peer] = config.peers
        self.assertEqual((peer.title, peer.host, peer.port), ("PACS", "pacs.example.org", 104))
        self.assertEqual(peer.tls.certificate, pki.clientCertificate)
        self.assertEqual(peer.tls.privateKey, pki.clientKey)
        self.assertEqual(peer.tls.trusted, [pki.caCertificate])
        self.assertEqual(peer.tls.verify, "require")

    def test_profile(self):
        """
        The example's profile line, in place of transfer-syntaxes and
        promiscuous, names a profile of etc/storescp-asconfig.cfg.
        """
        shutil.copy(ASCONFIG, self.directory)
        with open(EXAMPLE, encoding="utf-8") as f:
            text = f.read()
        text = re.sub(r"(?m)^(transfer-syntaxes|promiscuous) = .*$", "", text)
        text = re.sub(r"(?m)^# (profile = .*)$", r"\1", text)
        config = readConfig(self.write(text))
        self.assertEqual(config.entities[0].profile, (os.path.join(self.directory, "storescp-asconfig.cfg"), "Default"))


class DefaultsTests(_ConfigFileMixin, unittest.TestCase):
    """
    What a key left out means.
    """

    def test_emptyFile(self):
        """
        An empty file is the daemon's quick-start configuration, its data
        directory in the working directory (as without a file).
        """
        path = self.write("")
        config = readConfig(path)
        self.assertEqual(config.listen, ("tcp:11112",))
        self.assertEqual(config.limits, Limits())
        self.assertEqual(config.peers, [])
        self.assertEqual(config.path, path)
        [entity] = config.entities
        self.assertEqual(entity.title, "DICOMD")
        self.assertEqual(entity.storage.outputDirectory, os.path.abspath(DEFAULT_DIRECTORY))
        self.assertEqual(entity.storage.sortMode, SORT_STUDY_UID)

    def test_entityDefaults(self):
        """
        An [[ae]] with only its title gets the defaults of every other key.
        """
        config = self.read(
            """
            [[ae]]
            title = "ARCHIVE"
            """
        )
        [entity] = config.entities
        expected = EntityConfig(
            title="ARCHIVE",
            storage=StorageOptions(outputDirectory=os.path.abspath(DEFAULT_DIRECTORY), sortMode=SORT_STUDY_UID),
        )
        self.assertEqual(entity, expected)

    def test_builtInDefaults(self):
        """
        L{DaemonConfig} with no arguments is what twistd dicomd runs
        without a file.
        """
        config = DaemonConfig()
        self.assertEqual(config.listen, ("tcp:11112",))
        self.assertIsNone(config.path)
        self.assertEqual(config.entities[0].storage.outputDirectory, DEFAULT_DIRECTORY)
        self.assertEqual(Limits().maxAssociations, 128)
        self.assertEqual(Limits().maxAssociationsPerHost, 64)

    def test_zeroMeansNoTimeout(self):
        """
        dimse-timeout and idle-timeout 0 mean no timeout; max-pdu 0 no
        limit.
        """
        config = self.read(
            """
            [limits]
            dimse-timeout = 0
            idle-timeout = 0
            max-pdu = 0
            shutdown-grace = 0
            """
        )
        self.assertIsNone(config.limits.dimseTimeout)
        self.assertIsNone(config.limits.idleTimeout)
        self.assertEqual(config.limits.maxPDU, 0)
        self.assertEqual(config.limits.shutdownGrace, 0.0)

    def test_numbers(self):
        """
        Integers are taken where numbers of seconds are expected.
        """
        config = self.read(
            """
            limits.acse-timeout = 5
            limits.dimse-timeout = 2.5
            limits.idle-timeout = 120
            limits.max-associations = 3
            limits.max-associations-per-host = 1
            limits.max-pending-connections = 10
            limits.max-pdu = 16384
            """
        )
        self.assertEqual(
            config.limits,
            Limits(
                maxAssociations=3,
                maxAssociationsPerHost=1,
                maxPendingConnections=10,
                maxPDU=16384,
                acseTimeout=5.0,
                dimseTimeout=2.5,
                idleTimeout=120.0,
                shutdownGrace=30.0,
            ),
        )


class ValuesTests(_ConfigFileMixin, unittest.TestCase):
    """
    The values each key takes.
    """

    def test_twoEntities(self):
        """
        Each [[ae]] and its [ae.storage] and [ae.actions] tables are read
        into their own L{EntityConfig}; the first is the default AE.
        """
        config = self.read(
            """
            answer-any-called-ae = false
            [[ae]]
            title = "STORE"
            directory = "store"
            access = "w"
            [ae.storage]
            sort = "timestamp"
            sort-prefix = "ST"
            file-names = "unique"
            extension = ".dcm"
            fsync = true
            [ae.actions]
            on-reception = "echo #f"
            synchronous = true
            rename-on-end-of-study = true
            end-of-study-timeout = 5

            [[ae]]
            title = "ARCHIVE"
            directory = "archive"
            access = "R"
            models = ["patient-study-only"]
            get = false
            [ae.storage]
            sort = "patient-name"
            file-names = "time"

            [[ae]]
            title = "FLAT"
            directory = "flat"
            access = "WR"
            query-retrieve = false
            promiscuous = true
            transfer-syntaxes = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"]
            storage = { sort = "none", ignore = true }
            """
        )
        self.assertFalse(config.answerAnyCalledAETitle)
        store, archive, flat = config.entities
        self.assertEqual([e.title for e in config.entities], ["STORE", "ARCHIVE", "FLAT"])
        self.assertEqual(store.access, "W")
        self.assertTrue(store.writable)
        self.assertFalse(store.readable)
        self.assertEqual(store.storage.outputDirectory, os.path.abspath("store"))
        self.assertEqual(store.storage.sortMode, SORT_TIMESTAMP)
        self.assertEqual(store.storage.sortPrefix, "ST")
        self.assertEqual(store.storage.fileNames, naming.FileNameScheme.UNIQUE)
        self.assertEqual(store.storage.extension, ".dcm")
        self.assertTrue(store.storage.sync)
        self.assertEqual(store.storage.execOnReception, "echo #f")
        self.assertTrue(store.storage.execSync)
        self.assertTrue(store.storage.renameOnEndOfStudy)
        self.assertEqual(store.storage.endOfStudyTimeout, 5.0)
        self.assertEqual(archive.access, "R")
        self.assertTrue(archive.readable)
        self.assertFalse(archive.writable)
        self.assertEqual(archive.models, (PATIENT_STUDY_ONLY,))
        self.assertFalse(archive.get)
        self.assertEqual(archive.storage.sortMode, SORT_PATIENT_NAME)
        self.assertEqual(archive.storage.fileNames, naming.FileNameScheme.TIME)
        self.assertEqual(flat.access, "RW")
        self.assertFalse(flat.readable)
        self.assertTrue(flat.promiscuous)
        self.assertEqual(flat.transferSyntaxes, ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1"))
        self.assertIsNone(flat.storage.sortMode)
        self.assertTrue(flat.storage.ignore)

    def test_transferSyntaxOptions(self):
        """
        transfer-syntaxes takes each of storescp's preference options.
        """
        for option, syntaxes in ACCEPTOR_PREFERENCES.items():
            config = self.read('[[ae]]\ntitle = "A"\ntransfer-syntaxes = "%s"\n' % (option,))
            self.assertEqual(config.entities[0].transferSyntaxes, syntaxes, option)

    def test_quotaSizes(self):
        """
        max-bytes-per-study takes a number of bytes or a size with a unit.
        """
        for size, expected in [
            ("4096", 4096),
            ('"4096"', 4096),
            ('"512kb"', 512 << 10),
            ('"512mb"', 512 << 20),
            ('"2gb"', 2 << 30),
            ('" 1 TB "', 1 << 40),
            ('"10b"', 10),
        ]:
            config = self.read('[[ae]]\ntitle = "A"\nquota = { max-studies = 7, max-bytes-per-study = %s }\n' % (size,))
            self.assertEqual(config.entities[0].quota, Quota(7, expected), size)

    def test_quotaTable(self):
        """
        A quota can be its own table, [ae.quota].
        """
        config = self.read(
            """
            [[ae]]
            title = "A"
            [ae.quota]
            max-studies = 2
            max-bytes-per-study = "1mb"
            """
        )
        self.assertEqual(config.entities[0].quota, Quota(2, 1 << 20))

    def test_accessRules(self):
        """
        calling-ae-titles are AE titles (spaces around them dropped); hosts
        are networks or host names.
        """
        config = self.read(
            """
            [[ae]]
            title = " A "
            calling-ae-titles = ["CT01", " MR02"]
            hosts = ["127.0.0.1", "10.1.0.0/16", "::1", "fd00::/8", "modality.example.org", "ct-1"]
            """
        )
        [entity] = config.entities
        self.assertEqual(entity.title, "A")
        self.assertEqual(entity.callingAETitles, ("CT01", "MR02"))
        self.assertEqual([str(host) for host in entity.hosts], ["127.0.0.1/32", "10.1.0.0/16", "::1/128", "fd00::/8", "modality.example.org", "ct-1"])

    def test_peers(self):
        """
        Each [[peer]] is a C-MOVE destination; a plain one has no TLS.
        """
        config = self.read(
            """
            [[peer]]
            title = "VIEWER"
            host = "10.0.0.12"
            port = 104
            [[peer]]
            title = "PACS"
            host = "pacs.example.org"
            port = 11112
            """
        )
        self.assertEqual(config.peers, [PeerConfig("VIEWER", "10.0.0.12", 104), PeerConfig("PACS", "pacs.example.org", 11112)])

    def test_peerTLS(self):
        """
        A peer's tls table: key, certificate and trusted certificates
        relative to the file, the verification mode, profile, CRL and
        server name.
        """
        writeTestPKI(os.path.join(self.directory, "pki"))
        config = self.read(
            """
            [[peer]]
            title = "PACS"
            host = "localhost"
            port = 2762
            [peer.tls]
            private-key = "pki/client.key"
            certificate = "pki/client.pem"
            ca = "pki/ca.pem"
            profile = "bcp195"
            crl = ["pki/ca-crl-empty.pem"]
            crl-check = "chain"
            server-name = "pacs.example.org"
            """
        )
        tls = config.peers[0].tls
        pki = os.path.join(self.directory, "pki")
        self.assertEqual(tls.privateKey, os.path.join(pki, "client.key"))
        self.assertEqual(tls.certificate, os.path.join(pki, "client.pem"))
        self.assertEqual(tls.trusted, [os.path.join(pki, "ca.pem")])
        self.assertEqual(tls.crls, [os.path.join(pki, "ca-crl-empty.pem")])
        self.assertEqual((tls.verify, tls.profile, tls.crlCheck, tls.sni), ("require", "bcp195", "chain", "pacs.example.org"))

    def test_anonymousTLSClient(self):
        """
        A peer reached over TLS without a client certificate needs only the
        certificates it trusts; verify = "none" not even those.
        """
        writeTestPKI(self.directory)
        config = self.read(
            """
            [[peer]]
            title = "A"
            host = "::1"
            port = 2762
            tls = { ca = ["ca.pem"] }
            [[peer]]
            title = "B"
            host = "b.example.org"
            port = 2762
            tls = { verify = "none" }
            """
        )
        self.assertIsNone(config.peers[0].tls.privateKey)
        self.assertEqual(config.peers[1].tls.verify, "none")

    def test_relativePaths(self):
        """
        The paths of files dicomd reads (a profile) are relative to the
        file's directory; the places it writes (storage directories, the
        database) to the working directory, as --output-directory is, so
        that an example file never writes beside itself; C{~} is the home
        directory; absolute paths stay.
        """
        os.makedirs(os.path.join(self.directory, "conf"))
        shutil.copy(ASCONFIG, os.path.join(self.directory, "conf", "as.cfg"))
        path = self.write(
            """
            database = "../index/db.sqlite"
            [[ae]]
            title = "A"
            directory = "data/a"
            profile = { file = "as.cfg", name = "Default" }
            [[ae]]
            title = "B"
            directory = "/srv/dicom/b"
            [[ae]]
            title = "C"
            directory = "~/c"
            """,
            name="conf/dicomd.toml",
        )
        work = os.path.join(self.directory, "work")
        os.makedirs(work)
        cwd = os.getcwd()
        os.chdir(work)
        try:
            config = readConfig(os.path.relpath(path, work))
        finally:
            os.chdir(cwd)
        conf = os.path.join(self.directory, "conf")
        self.assertEqual(config.path, path)
        self.assertEqual(config.database, os.path.join(self.directory, "index", "db.sqlite"))
        self.assertEqual(config.entities[0].storage.outputDirectory, os.path.join(work, "data", "a"))
        self.assertEqual(config.entities[0].profile, (os.path.join(conf, "as.cfg"), "Default"))
        self.assertEqual(config.entities[1].storage.outputDirectory, "/srv/dicom/b")
        self.assertEqual(config.entities[2].storage.outputDirectory, os.path.expanduser("~/c"))

    def test_endpoints(self):
        """
        listen takes any number of Twisted endpoint strings, and status one.
        """
        config = self.read(
            """
            listen = ["tcp:11112", "tcp6:11113:interface=\\\\:\\\\:1", "unix:dicomd.socket"]
            status = "tcp:8080:interface=127.0.0.1"
            """
        )
        self.assertEqual(config.listen, ("tcp:11112", "tcp6:11113:interface=\\:\\:1", "unix:dicomd.socket"))
        self.assertEqual(config.status, "tcp:8080:interface=127.0.0.1")

    def test_checkEndpoint(self):
        """
        L{checkEndpoint} accepts what Twisted parses and says why it refuses
        the rest.
        """
        checkEndpoint("tcp:104:interface=127.0.0.1")
        self.assertIn("Unknown endpoint type", str(self.assertRaises(ValueError, checkEndpoint, "tpc:104")))
        self.assertIn("'tcp:port'", str(self.assertRaises(ValueError, checkEndpoint, "tcp:port")))
        self.assertRaises(ValueError, checkEndpoint, "")


class PermissionTests(_ConfigFileMixin, unittest.TestCase):
    """
    file-mode and directory-mode: octal strings, for the index and every
    AE's storage.
    """

    def test_defaults(self):
        """
        Without the keys, files are 0640 and directories 0750.
        """
        config = self.read('[[ae]]\ntitle = "A"\n')
        self.assertEqual((config.fileMode, config.directoryMode), (0o640, 0o750))
        self.assertEqual((config.entities[0].storage.fileMode, config.entities[0].storage.directoryMode), (0o640, 0o750))

    def test_modes(self):
        """
        The modes reach the daemon and every AE, with or without a leading 0.
        """
        for text in ('file-mode = "0660"\ndirectory-mode = "0770"\n', 'file-mode = "660"\ndirectory-mode = "0770"\n'):
            config = self.read(text + '[[ae]]\ntitle = "A"\n[[ae]]\ntitle = "B"\ndirectory = "b"\n')
            self.assertEqual((config.fileMode, config.directoryMode), (0o660, 0o770))
            for entity in config.entities:
                self.assertEqual((entity.storage.fileMode, entity.storage.directoryMode), (0o660, 0o770))
        config = self.read('file-mode = "0600"\n')
        self.assertEqual(config.entities[0].storage.fileMode, 0o600)

    def test_errors(self):
        """
        A decimal integer, a string that is not octal, or a mode that locks
        dicomd out of what it creates, is refused naming the key.
        """
        self.assertConfigError("file-mode = 640\n", 1, "file-mode", 'expected permission bits as a string of octal digits, such as "0640", not 640')
        self.assertConfigError('file-mode = "0680"\n', 1, "file-mode", "string of octal digits")
        self.assertConfigError('listen = ["tcp:1"]\ndirectory-mode = "rwx"\n', 2, "directory-mode", 'such as "0750"')
        self.assertConfigError('file-mode = "0440"\n', 1, "file-mode", "'0440' does not let dicomd read and write its files (that needs 0600)")
        self.assertConfigError('directory-mode = "0600"\n', 1, "directory-mode", "(that needs 0700)")


class ErrorTests(_ConfigFileMixin, unittest.TestCase):
    """
    Every mistake stops the start with a message naming the file, the line
    and the key.
    """

    def test_unknownTopLevelKey(self):
        """
        An unknown top-level key is named with the known ones.
        """
        error = self.assertConfigError(
            """
            listen = ["tcp:11112"]
            # a comment
            lisen = ["tcp:104"]
            """,
            3,
            "lisen",
            "unknown key",
        )
        self.assertIn("listen, status", str(error))

    def test_unknownTable(self):
        """
        An unknown table is named at its header.
        """
        self.assertConfigError("listen = []\n\n[limit]\nmax-pdu = 1\n", 3, "limit", "unknown key")

    def test_unknownKeyInLimits(self):
        """
        An unknown key in [limits].
        """
        self.assertConfigError(
            """
            [limits]
            max-associations = 4
            max-asociations-per-host = 2
            """,
            3,
            "limits.max-asociations-per-host",
            "unknown key",
        )

    def test_unknownKeyInSecondEntity(self):
        """
        An unknown key of the second [[ae]] is found there, not in the
        first, which has a commented-out key of the same name.
        """
        self.assertConfigError(
            """
            [[ae]]
            title = "A"
            # directry = "x"

            [[ae]]
            title = "B"
            directry = "b"
            """,
            7,
            "ae[1].directry",
            "unknown key",
        )

    def test_unknownKeyInStorage(self):
        """
        An unknown key in the second AE's [ae.storage].
        """
        self.assertConfigError(
            """
            [[ae]]
            title = "A"
            [ae.storage]
            sort = "none"
            [[ae]]
            title = "B"
            [ae.storage]
            sort = "timestamp"
            naming = "uid"
            """,
            9,
            "ae[1].storage.naming",
            "unknown key",
        )

    def test_unknownKeyInActions(self):
        """
        An unknown key in [ae.actions].
        """
        self.assertConfigError(
            """
            [[ae]]
            title = "A"
            [ae.actions]
            on-receive = "x"
            """,
            4,
            "ae[0].actions.on-receive",
            "unknown key",
        )

    def test_unknownKeyInInlineTable(self):
        """
        An unknown key of an inline table is found on the inline table's
        line.
        """
        self.assertConfigError(
            """
            [[ae]]
            title = "A"
            quota = { max-studies = 1, max-bytes-per-study = 10, max-files = 3 }
            """,
            3,
            "ae[0].quota.max-files",
            "unknown key",
        )

    def test_unknownKeyInPeer(self):
        """
        Unknown keys in [[peer]] and its tls table.
        """
        self.assertConfigError('[[peer]]\ntitle = "P"\nhost = "h"\nport = 1\naddress = "x"\n', 5, "peer[0].address", "unknown key")
        self.assertConfigError(
            '[[peer]]\ntitle = "P"\nhost = "h"\nport = 1\n[peer.tls]\nverify = "none"\nkey = "x"\n', 7, "peer[0].tls.key", "unknown key"
        )

    def test_wrongTypes(self):
        """
        A value of the wrong type is named with the type expected.
        """
        self.assertConfigError('listen = "tcp:11112"\n', 1, "listen", "expected a list, not 'tcp:11112'")
        self.assertConfigError('status = 8080\n', 1, "status", "expected a string")
        self.assertConfigError("answer-any-called-ae = 1\n", 1, "answer-any-called-ae", "expected true or false")
        self.assertConfigError('[limits]\nmax-pdu = "16kb"\n', 2, "limits.max-pdu", "expected an integer")
        self.assertConfigError("[limits]\nmax-associations = 2.5\n", 2, "limits.max-associations", "expected an integer")
        self.assertConfigError("[limits]\nmax-associations = true\n", 2, "limits.max-associations", "expected an integer")
        self.assertConfigError('[limits]\nacse-timeout = "30s"\n', 2, "limits.acse-timeout", "expected a number")
        self.assertConfigError("limits = 3\n", 1, "limits", "expected a table")
        self.assertConfigError("[[ae]]\ntitle = 5\n", 2, "ae[0].title", "expected a string")
        self.assertConfigError('[[ae]]\ntitle = "A"\npromiscuous = "yes"\n', 3, "ae[0].promiscuous", "expected true or false")
        self.assertConfigError('[[ae]]\ntitle = "A"\n[ae.storage]\nfsync = 1\n', 4, "ae[0].storage.fsync", "expected true or false")
        self.assertConfigError('[[ae]]\ntitle = "A"\nmodels = "study-root"\n', 3, "ae[0].models", "expected a list")
        self.assertConfigError('[[ae]]\ntitle = "A"\nstorage = "none"\n', 3, "ae[0].storage", "expected a table")
        self.assertConfigError('[[peer]]\ntitle = "P"\nhost = "h"\nport = "104"\n', 4, "peer[0].port", "expected an integer")
        self.assertConfigError('[[ae]]\ntitle = "A"\nhosts = [10]\n', 3, "ae[0].hosts", "expected host names or networks")

    def test_tableInsteadOfArray(self):
        """
        [ae] and [peer] instead of [[ae]] and [[peer]] say so.
        """
        self.assertConfigError('listen = ["tcp:1"]\n[ae]\ntitle = "A"\n', 2, "ae", "write [[ae]]")
        self.assertConfigError('[peer]\ntitle = "A"\n', 1, "peer", "write [[peer]]")

    def test_badAETitles(self):
        """
        AE titles are 1 to 16 printable ASCII characters without backslash,
        not all spaces.
        """
        for title in ["", "ABCDEFGHIJKLMNOPQ", "A\\\\B", "    ", "CT\\u00c9", "A\\tB"]:
            self.assertConfigError('[[ae]]\ntitle = "%s"\n' % (title,), 2, "ae[0].title", "is not an AE title")
        self.assertConfigError('[[ae]]\ntitle = "A"\ncalling-ae-titles = ["CT", "ABCDEFGHIJKLMNOPQ"]\n', 3, "ae[0].calling-ae-titles", "is not an AE title")
        self.assertConfigError('[[ae]]\ntitle = "A"\ncalling-ae-titles = ["CT", 5]\n', 3, "ae[0].calling-ae-titles", "expected an AE title")
        self.assertConfigError('[[ae]]\ntitle = "A"\ncalling-ae-titles = []\n', 3, "ae[0].calling-ae-titles", "lets nobody in")
        self.assertConfigError('[[peer]]\ntitle = "A\\\\B"\nhost = "h"\nport = 1\n', 2, "peer[0].title", "is not an AE title")

    def test_missingTitle(self):
        """
        An [[ae]] without a title is named at its header.
        """
        self.assertConfigError('[[ae]]\ntitle = "A"\n\n[[ae]]\ndirectory = "b"\n', 4, "ae[1]", "needs a title")

    def test_duplicateTitle(self):
        """
        An AE title configured twice is named at its second title (spaces
        around titles are not significant).
        """
        self.assertConfigError(
            """
            [[ae]]
            title = "A"
            [[ae]]
            title = "B"
            [[ae]]
            # the same as the first
            title = "A "
            """,
            7,
            "ae[2].title",
            "AE title 'A' configured twice",
        )

    def test_duplicatePeer(self):
        """
        A peer AE title configured twice.
        """
        self.assertConfigError(
            '[[peer]]\ntitle = "P"\nhost = "a"\nport = 1\n[[peer]]\ntitle = "P"\nhost = "b"\nport = 2\n',
            6,
            "peer[1].title",
            "configured twice",
        )

    def test_noAE(self):
        """
        ae = [] configures no AE at all.
        """
        self.assertConfigError("listen = []\n", 1, "listen", "no endpoint")
        self.assertConfigError('listen = ["tcp:1"]\nae = []\n', 2, "ae", "no AE title configured")

    def test_badSizes(self):
        """
        max-bytes-per-study must be a positive size; max-studies a positive
        integer; both are needed.
        """
        template = '[[ae]]\ntitle = "A"\n\nquota = { max-studies = %s, max-bytes-per-study = %s }\n'
        for size in ['"8 gigabytes"', '"1.5gb"', '"gb"', "1.5", "true", '""']:
            self.assertConfigError(template % ("1", size), 4, "ae[0].quota.max-bytes-per-study", "expected a size")
        for size in ["0", "-1", '"0mb"']:
            self.assertConfigError(template % ("1", size), 4, "ae[0].quota.max-bytes-per-study", "must be greater than 0")
        self.assertConfigError(template % ("0", "1"), 4, "ae[0].quota.max-studies", "must be greater than 0")
        self.assertConfigError(template % ("1.5", "1"), 4, "ae[0].quota.max-studies", "expected an integer")
        self.assertConfigError('[[ae]]\ntitle = "A"\nquota = { max-studies = 1 }\n', 3, "ae[0].quota", "needs max-studies and max-bytes-per-study")

    def test_badTransferSyntaxes(self):
        """
        transfer-syntaxes is one of storescp's options or a list of UIDs.
        """
        template = '[[ae]]\ntitle = "A"\ntransfer-syntaxes = %s\n'
        self.assertConfigError(template % '"+xz"', 3, "ae[0].transfer-syntaxes", "expected one of storescp's")
        self.assertConfigError(template % "[]", 3, "ae[0].transfer-syntaxes", "non-empty list")
        self.assertConfigError(template % "5", 3, "ae[0].transfer-syntaxes", "non-empty list")
        self.assertConfigError(template % '["1.2.840..1"]', 3, "ae[0].transfer-syntaxes", "'1.2.840..1' is not a transfer syntax UID")
        self.assertConfigError(template % '["LittleEndianExplicit"]', 3, "ae[0].transfer-syntaxes", "is not a transfer syntax UID")
        self.assertConfigError(template % "[1.2]", 3, "ae[0].transfer-syntaxes", "is not a transfer syntax UID")
        self.assertConfigError(template % '["1.2.840.10008.1.2", "1.2.840.10008.1.2"]', 3, "ae[0].transfer-syntaxes", "listed twice")

    def test_profileAndTransferSyntaxes(self):
        """
        A profile replaces transfer-syntaxes and promiscuous: both given is
        a conflict, named at the profile.
        """
        shutil.copy(ASCONFIG, self.directory)
        self.assertConfigError(
            """
            [[ae]]
            title = "A"
            transfer-syntaxes = "+xi"
            profile = { file = "storescp-asconfig.cfg", name = "Default" }
            """,
            4,
            "ae[0].profile",
            "a profile replaces transfer-syntaxes and promiscuous",
        )
        self.assertConfigError(
            """
            [[ae]]
            title = "A"
            promiscuous = true
            [ae.profile]
            file = "storescp-asconfig.cfg"
            name = "Default"
            """,
            4,
            "ae[0].profile",
            "a profile replaces",
        )

    def test_badProfile(self):
        """
        A profile file that is missing, or has no profile of that name.
        """
        shutil.copy(ASCONFIG, self.directory)
        self.assertConfigError('[[ae]]\ntitle = "A"\nprofile = { file = "nothere.cfg", name = "Default" }\n', 3, "ae[0].profile", "No such file")
        self.assertConfigError(
            '[[ae]]\ntitle = "A"\nprofile = { file = "storescp-asconfig.cfg", name = "Nope" }\n', 3, "ae[0].profile", "unknown configuration profile"
        )
        self.assertConfigError('[[ae]]\ntitle = "A"\nprofile = { file = "storescp-asconfig.cfg" }\n', 3, "ae[0].profile", "needs a file and a name")

    def test_renameWithoutSort(self):
        """
        rename-on-end-of-study needs study directories.
        """
        self.assertConfigError(
            """
            [[ae]]
            title = "A"
            [ae.storage]
            sort = "none"
            [ae.actions]
            rename-on-end-of-study = true
            """,
            6,
            "ae[0].actions.rename-on-end-of-study",
            "needs the files sorted into study directories",
        )

    def test_badChoices(self):
        """
        Keys with a fixed set of values name them.
        """
        self.assertConfigError('[[ae]]\ntitle = "A"\naccess = "X"\n', 3, "ae[0].access", "expected R, W or RW")
        self.assertConfigError('[[ae]]\ntitle = "A"\nmodels = ["patient-root", "worklist"]\n', 3, "ae[0].models", "unknown model 'worklist'")
        self.assertConfigError('[[ae]]\ntitle = "A"\nmodels = []\n', 3, "ae[0].models", "at least one model")
        self.assertConfigError('[[ae]]\ntitle = "A"\nstorage.sort = "date"\n', 3, "ae[0].storage.sort", "expected one of none, patient-name")
        self.assertConfigError('[[ae]]\ntitle = "A"\nstorage.file-names = "x"\n', 3, "ae[0].storage.file-names", "expected one of time, uid, unique")
        self.assertConfigError('[[peer]]\ntitle = "P"\nhost = "h"\nport = 1\ntls = { verify = "always" }\n', 5, "peer[0].tls.verify", "expected one of")

    def test_badNameParts(self):
        """
        sort-prefix and extension cannot leave the storage area.
        """
        self.assertConfigError('[[ae]]\ntitle = "A"\n[ae.storage]\nsort-prefix = "../x"\n', 4, "ae[0].storage.sort-prefix", "cannot be part of a file name")
        self.assertConfigError('[[ae]]\ntitle = "A"\n[ae.storage]\nextension = "/x"\n', 4, "ae[0].storage.extension", "cannot be part of a file name")

    def test_emptyCommand(self):
        """
        An empty command is a mistake, not "no command".
        """
        self.assertConfigError('[[ae]]\ntitle = "A"\n[ae.actions]\non-end-of-study = " "\n', 4, "ae[0].actions.on-end-of-study", "empty command")

    def test_unsafeCommand(self):
        """
        A placeholder that a nested shell would run as code is refused,
        with the safe form.
        """
        self.assertConfigError(
            "[[ae]]\ntitle = \"A\"\n[ae.actions]\non-reception = '''sh -c 'echo nested #a''''\n",
            4,
            "ae[0].actions.on-reception",
            "placeholder #a inside single quotes would let the network value run as code in a nested shell; "
            "write \"$DICOMD_CALLING_AE\" there instead: sh -c 'echo nested \"$DICOMD_CALLING_AE\"'",
        )
        self.assertConfigError(
            "[[ae]]\ntitle = \"A\"\n[ae.actions]\nsynchronous = true\non-end-of-study = 'ssh archive \"store #p\"'\n",
            5,
            "ae[0].actions.on-end-of-study",
            "run as code on the remote host",
        )

    def test_badHosts(self):
        """
        hosts entries are networks, addresses or host names.
        """
        self.assertConfigError('[[ae]]\ntitle = "A"\nhosts = ["10.0.0.0/33"]\n', 3, "ae[0].hosts", "'10.0.0.0/33' is neither")
        self.assertConfigError('[[ae]]\ntitle = "A"\nhosts = ["bad host"]\n', 3, "ae[0].hosts", "is neither")
        self.assertConfigError('[[ae]]\ntitle = "A"\nhosts = []\n', 3, "ae[0].hosts", "lets nobody in")

    def test_badLimits(self):
        """
        Limits must be positive (max-pdu within PS3.8's range; grace not
        negative).
        """
        self.assertConfigError("[limits]\nmax-associations = 0\n", 2, "limits.max-associations", "must be greater than 0, not 0")
        self.assertConfigError("[limits]\nmax-associations-per-host = -2\n", 2, "limits.max-associations-per-host", "must be greater than 0")
        self.assertConfigError("[limits]\nmax-pdu = 1024\n", 2, "limits.max-pdu", "must be 0 (no limit) or 4096..131072, not 1024")
        self.assertConfigError("[limits]\nmax-pdu = 200000\n", 2, "limits.max-pdu", "4096..131072")
        self.assertConfigError("[limits]\nmax-async-ops = 0\n", 2, "limits.max-async-ops", "must be 1 (no window) to 65535, not 0")
        self.assertConfigError("[limits]\nmax-async-ops = 65536\n", 2, "limits.max-async-ops", "1 (no window) to 65535")
        self.assertConfigError("[limits]\nmove-async-ops = 0\n", 2, "limits.move-async-ops", "must be 1 (no window) to 65535, not 0")
        self.assertConfigError("[limits]\nmove-async-ops = true\n", 2, "limits.move-async-ops", "expected an integer")
        self.assertConfigError("[limits]\nacse-timeout = 0\n", 2, "limits.acse-timeout", "must be greater than 0")
        self.assertConfigError("[limits]\nidle-timeout = -1\n", 2, "limits.idle-timeout", "must be greater than 0")
        self.assertConfigError("[limits]\nshutdown-grace = -1\n", 2, "limits.shutdown-grace", "must not be negative")
        self.assertConfigError('[[ae]]\ntitle = "A"\nactions.end-of-study-timeout = 0\n', 3, "ae[0].actions.end-of-study-timeout", "must be greater than 0")

    def test_badEndpoints(self):
        """
        listen and status must be endpoint strings Twisted can parse.
        """
        self.assertConfigError('listen = ["tcp:11112", "tcp:abc"]\n', 1, "listen", "'tcp:abc' is not a usable endpoint")
        self.assertConfigError('listen = ["tcp:11112", 104]\n', 1, "listen", "entry 2 is not an endpoint string")
        self.assertConfigError('listen = [\n  "tcp:11112",\n  "tpc:104",\n]\n', 1, "listen", "Unknown endpoint type: 'tpc'")
        self.assertConfigError('listen = ["tcp:1"]\nstatus = "http:8080"\n', 2, "status", "is not a usable endpoint")

    def test_badDatabase(self):
        """
        database must name a file, or be a PostgreSQL URL libpq can read;
        its password is not shown.
        """
        self.assertConfigError('database = ""\n', 1, "database", "expected a file name")
        error = self.assertConfigError(
            'database = "postgresql://dicomd:secret@db/archive?sslmode"\n', 1, "database", "not a PostgreSQL URL"
        )
        self.assertIn("postgresql://dicomd:***@db/archive", str(error))
        self.assertNotIn("secret", str(error))

    def test_postgresqlDatabase(self):
        """
        A PostgreSQL URL is kept as it is, not taken for a file name.
        """
        url = "postgresql://dicomd@db.example/archive"
        self.assertEqual(readConfig(self.write('database = "%s"\n' % (url,))).database, url)

    def test_stateDirectory(self):
        """
        state-directory is a directory, relative to the working directory
        as every place dicomd writes to; without it the default is chosen
        when the daemon is built; --state-directory replaces it.
        """
        self.assertIsNone(readConfig(self.write('listen = ["tcp:11112"]\n')).stateDirectory)
        path = self.write('state-directory = "state"\n', name="state.toml")
        self.assertEqual(readConfig(path).stateDirectory, os.path.abspath("state"))
        options = tap.Options()
        options.parseOptions(["--config", path, "--state-directory", "/srv/state"])
        self.assertEqual(options.overrides(options["base"]).stateDirectory, "/srv/state")
        self.assertConfigError('state-directory = ""\n', 1, "state-directory", "expected a directory name")

    def test_node(self):
        """
        node names the daemon among those sharing an index; without it the
        daemon takes the host's name; --node replaces it.
        """
        self.assertIsNone(readConfig(self.write('listen = ["tcp:11112"]\n')).node)
        path = self.write('node = "gateway-1"\n', name="node.toml")
        self.assertEqual(readConfig(path).node, "gateway-1")
        options = tap.Options()
        options.parseOptions(["--config", path, "--node", "gateway-2"])
        self.assertEqual(options.overrides(options["base"]).node, "gateway-2")
        self.assertConfigError('node = " "\n', 1, "node", "expected a name of 1 to 64 printable characters, not ' '")
        error = self.assertRaises(usage.UsageError, tap.DaemonOptions().parseOptions, ["--node", "a\tb"])
        self.assertEqual(str(error), "--node: expected a name of 1 to 64 printable characters, not 'a\\tb'")

    def test_peerRequiredKeys(self):
        """
        A [[peer]] needs a title, a host and a port.
        """
        self.assertConfigError('[[peer]]\ntitle = "P"\nhost = "h"\n', 1, "peer[0]", "needs port")
        self.assertConfigError('[[peer]]\ntitle = "P"\nport = 104\n', 1, "peer[0]", "needs host")
        self.assertConfigError('[[peer]]\nhost = "h"\nport = 104\n', 1, "peer[0]", "needs title")

    def test_badPeerPort(self):
        """
        A peer's port is 1 to 65535.
        """
        for port in ["0", "65536", "-1"]:
            self.assertConfigError(
                '[[peer]]\ntitle = "P"\nhost = "h"\nport = 1\n[[peer]]\ntitle = "Q"\nhost = "h"\nport = %s\n' % (port,),
                8,
                "peer[1].port",
                "not a port number: %s" % (port,),
            )

    def test_badPeerHost(self):
        """
        A peer's host is a host name or an address.
        """
        self.assertConfigError('[[peer]]\ntitle = "P"\nhost = ""\nport = 1\n', 3, "peer[0].host", "neither a host name")
        self.assertConfigError('[[peer]]\ntitle = "P"\nhost = "pacs:104"\nport = 1\n', 3, "peer[0].host", "neither a host name")

    def test_tlsKeyCertificateMismatch(self):
        """
        A peer's private key that does not belong to its certificate is
        found at start, named at the certificate.
        """
        writeTestPKI(self.directory)
        self.assertConfigError(
            """
            [[peer]]
            title = "PACS"
            host = "h"
            port = 2762
            [peer.tls]
            private-key = "client.key"
            certificate = "server.pem"
            ca = ["ca.pem"]
            """,
            7,
            "peer[0].tls.certificate",
            "does not belong to the key",
        )

    def test_tlsHalfIdentity(self):
        """
        private-key and certificate go together.
        """
        writeTestPKI(self.directory)
        self.assertConfigError(
            '[[peer]]\ntitle = "P"\nhost = "h"\nport = 1\ntls = { private-key = "client.key", ca = ["ca.pem"] }\n',
            5,
            "peer[0].tls.private-key",
            "private-key and certificate go together: private-key without certificate",
        )
        self.assertConfigError(
            '[[peer]]\ntitle = "P"\nhost = "h"\nport = 1\n[peer.tls]\nca = ["ca.pem"]\ncertificate = "client.pem"\n',
            7,
            "peer[0].tls.certificate",
            "certificate without private-key",
        )

    def test_tlsFiles(self):
        """
        Missing or unusable TLS files are named with the key that names
        them.
        """
        writeTestPKI(self.directory)
        self.assertConfigError(
            '[[peer]]\ntitle = "P"\nhost = "h"\nport = 1\n[peer.tls]\nca = ["nothere.pem"]\n',
            6,
            "peer[0].tls.ca",
            "cannot read %s" % (os.path.join(self.directory, "nothere.pem"),),
        )
        self.assertConfigError(
            '[[peer]]\ntitle = "P"\nhost = "h"\nport = 1\n[peer.tls]\nverify = "require"\n', 5, "peer[0].tls.ca", "needs trusted certificates"
        )
        self.assertConfigError(
            '[[peer]]\ntitle = "P"\nhost = "h"\nport = 1\n[peer.tls]\nprivate-key = "ca.pem"\ncertificate = "client.pem"\nca = "ca.pem"\n',
            6,
            "peer[0].tls.private-key",
            "cannot load private key",
        )

    def test_tlsEncryptedKeyWithoutPassword(self):
        """
        An encrypted key needs its password in the file: a daemon has no
        terminal to ask on.
        """
        pki = writeTestPKI(self.directory)
        pki.client.write(self.directory, "locked", password="secret")
        template = '[[peer]]\ntitle = "P"\nhost = "h"\nport = 1\n[peer.tls]\nprivate-key = "locked.key"\ncertificate = "locked.pem"\nca = "ca.pem"\n'
        self.assertConfigError(template, 6, "peer[0].tls.private-key", "cannot load private key")
        config = self.read(template + 'password = "secret"\n')
        self.assertEqual(config.peers[0].tls.password, "secret")

    def test_notTOML(self):
        """
        A file that is not TOML: the line tomllib names, and the key set on
        it.
        """
        self.assertConfigError(
            """
            [limits]
            max-pdu = 16384
            max-associations = many
            """,
            3,
            "limits.max-associations",
            "not valid TOML: Invalid value",
        )
        self.assertConfigError('[[ae]]\ntitle = "A"\ntitle = "B"\n', 3, "ae[0].title", "not valid TOML")
        self.assertConfigError('listen = ["tcp:1"]\n[limits\n', 2, "", "not valid TOML")

    def test_notTOMLAtEnd(self):
        """
        A document that ends too early is named at its last line.
        """
        self.assertConfigError('status = "tcp:1"\nlisten = [\n  "tcp:2",\n', 3, "", "not valid TOML")

    def test_unreadable(self):
        """
        A file that cannot be read names the file and why.
        """
        path = os.path.join(self.directory, "missing.toml")
        error = self.assertRaises(ConfigError, readConfig, path)
        self.assertEqual((error.path, error.line, error.key), (path, None, ""))
        self.assertEqual(str(error), "%s: cannot read: No such file or directory" % (path,))


class LineTests(_ConfigFileMixin, unittest.TestCase):
    """
    The line an error names is the line of its key, however the file is
    laid out.
    """

    def test_multiLineArray(self):
        """
        Strings inside a multi-line array that look like keys are not
        taken for keys.
        """
        self.assertConfigError(
            """
            listen = [
              "tcp:11112:interface=127.0.0.1",
              "unix:/run/dicomd.sock",
            ]
            [[ae]]
            title = "A"
            calling-ae-titles = [
              "title = B",
            ]
            title-bad = 1
            """,
            10,
            "ae[0].title-bad",
            "unknown key",
        )

    def test_multiLineString(self):
        """
        Lines inside a multi-line string are not keys, nor are headers
        inside it.
        """
        self.assertConfigError(
            '''
            [[ae]]
            title = "A"
            [ae.actions]
            on-reception = """
            synchronous = true
            [[ae]]
            """
            synchronous = "yes"
            ''',
            8,
            "ae[0].actions.synchronous",
            "expected true or false",
        )

    def test_dottedKeys(self):
        """
        Dotted keys at the top level and in a table.
        """
        self.assertConfigError('limits.max-pdu = 4096\nlimits.acse-timeout = -3\n', 2, "limits.acse-timeout", "must be greater")
        self.assertConfigError('[[ae]]\ntitle = "A"\nstorage.sort = "none"\nactions.rename-on-end-of-study = true\n', 4, "ae[0].actions.rename-on-end-of-study", "needs")

    def test_quotedKeys(self):
        """
        Quoted keys, and headers with spaces and comments.
        """
        self.assertConfigError('[ "limits" ]  # see the docs [1]\n"max-pdu" = 4096\n\'acse-timeout\' = 0\n', 3, "limits.acse-timeout", "must be greater")

    def test_inlineArrayOfTables(self):
        """
        AEs written as an inline array are found at the array's line.
        """
        self.assertConfigError('answer-any-called-ae = true\nae = [{ title = "A" }, { title = "A" }]\n', 2, "ae[1].title", "configured twice")

    def test_indented(self):
        """
        Indented keys and headers.
        """
        self.assertConfigError('[[ae]]\n  title = "A"\n  [ae.storage]\n    sort = "nope"\n', 4, "ae[0].storage.sort", "expected one of")

    def test_keyWithValueOnLaterTable(self):
        """
        The key of a table's second entry is not confused with the first's
        commented-out table.
        """
        self.assertConfigError(
            """
            [[peer]]
            title = "A"
            host = "a"
            port = 1
            # [peer.tls]
            # verify = "none"
            [[peer]]
            title = "B"
            host = "b"
            port = 1
            [peer.tls]
            verify = "sometimes"
            """,
            12,
            "peer[1].tls.verify",
            "expected one of",
        )


class OptionsTests(_ConfigFileMixin, unittest.TestCase):
    """
    The options of C{twistd dicomd} and how they override the file.
    """

    def options(self, *argv) -> tap.DaemonOptions:
        options = tap.DaemonOptions()
        options.parseOptions(list(argv))
        return options

    def test_noConfig(self):
        """
        Without --config the built-in defaults apply, with the options.
        """
        options = self.options("--aetitle", "GATE", "--listen", "tcp:104")
        config = options.overrides(options["base"])
        self.assertIsNone(config.path)
        self.assertEqual(config.listen, ("tcp:104",))
        self.assertEqual(config.entities[0].title, "GATE")

    def test_overridesFirstAE(self):
        """
        Command-line options change the file's first AE only, replace its
        endpoints and limits, and add peers.
        """
        path = self.write(
            """
            listen = ["tcp:11112"]
            [limits]
            max-associations = 10
            shutdown-grace = 5
            [[ae]]
            title = "FIRST"
            directory = "first"
            [[ae]]
            title = "SECOND"
            directory = "second"
            [[peer]]
            title = "PACS"
            host = "pacs"
            port = 104
            """
        )
        options = self.options(
            "--config",
            path,
            "--aetitle",
            "GATE",
            "--output-directory",
            "/srv/gate",
            "--listen",
            "tcp:104",
            "--listen",
            "tcp:105",
            "--max-associations",
            "3",
            "--implicit",
            "--flat",
            "--peer",
            "VIEWER:10.0.0.2:4006",
            "--status",
            "tcp:8080",
        )
        config = options.overrides(options["base"])
        self.assertEqual(config.listen, ("tcp:104", "tcp:105"))
        self.assertEqual(config.status, "tcp:8080")
        self.assertEqual(config.limits.maxAssociations, 3)
        self.assertEqual(config.limits.shutdownGrace, 5.0)
        first, second = config.entities
        self.assertEqual(first.title, "GATE")
        self.assertEqual(first.storage.outputDirectory, "/srv/gate")
        self.assertIsNone(first.storage.sortMode)
        self.assertEqual(first.transferSyntaxes, ACCEPTOR_PREFERENCES["+xi"])
        self.assertEqual(second.title, "SECOND")
        self.assertEqual(second.storage.outputDirectory, os.path.abspath("second"))
        self.assertEqual(second.storage.sortMode, SORT_STUDY_UID)
        self.assertEqual([peer.title for peer in config.peers], ["PACS", "VIEWER"])

    def test_badConfig(self):
        """
        A bad file stops twistd with the message naming file, line, key.
        """
        path = self.write("[limits]\nmax-pdu = 1\n")
        error = self.assertRaises(usage.UsageError, self.options, "--config", path)
        self.assertEqual(str(error), "%s, line 2: limits.max-pdu: must be 0 (no limit) or 4096..131072, not 1" % (path,))

    def test_badListen(self):
        """
        An endpoint string Twisted cannot parse is a usage error, not a
        traceback.
        """
        error = self.assertRaises(usage.UsageError, self.options, "--listen", "tcp:abc")
        self.assertIn("--listen: 'tcp:abc' is not a usable endpoint", str(error))
        error = self.assertRaises(usage.UsageError, self.options, "--status", "foo:1")
        self.assertIn("--status: 'foo:1' is not a usable endpoint", str(error))

    def test_badNumbers(self):
        """
        A negative grace is refused.
        """
        error = self.assertRaises(usage.UsageError, self.options, "--shutdown-grace", "-1")
        self.assertIn("--shutdown-grace", str(error))


class ForwardingConfigTests(_ConfigFileMixin, unittest.TestCase):
    """
    C{[[ae.forward]]}, C{[forwarding]} and C{keep}.
    """

    PEER = """
        [[peer]]
        title = "PACS"
        host = "127.0.0.1"
        port = 104
        """

    def test_routes(self):
        """
        Routes read into L{Route}s; match keys other than the three named
        ones are DICOM match values on keywords.
        """
        config = self.read(
            """
            [forwarding]
            retry-first = 2
            retry-max = 30
            give-up-after = 3600
            associations-per-peer = 4
            lease = 15
            async-ops = 8

            [[ae]]
            title = "GATEWAY"
            [ae.storage]
            keep = "until-forwarded"
            [[ae.forward]]
            to = "PACS"
            [[ae.forward]]
            to = "PACS"
            when = "end-of-study"
            match = { sop-classes = ["1.2.840.10008.5.1.4.1.1.2"], StationName = "CT*" }
            """
            + self.PEER
        )
        [entity] = config.entities
        first, second = entity.routes
        self.assertEqual(first, Route("PACS"))
        self.assertEqual(second.when, "end-of-study")
        self.assertEqual(second.match.sopClasses, ("1.2.840.10008.5.1.4.1.1.2",))
        self.assertEqual(len(second.match.conditions), 1)
        self.assertTrue(entity.storage.keepUntilForwarded)
        self.assertTrue(entity.storage.forwardsStudies)
        self.assertEqual(config.forwarding.policy, RetryPolicy(2.0, 30.0, 3600.0))
        self.assertEqual(config.forwarding.associationsPerPeer, 4)
        self.assertEqual(config.forwarding.lease, 15.0)
        self.assertEqual(config.forwarding.asynchronousOperations, 8)

    def test_unknownPeer(self):
        self.assertConfigError(
            """
            [[ae]]
            title = "GATEWAY"
            [[ae.forward]]
            to = "NOWHERE"
            """
            + self.PEER,
            4,
            "ae[0].forward[0].to",
            "no [[peer]] has the AE title 'NOWHERE' (peers: PACS)",
        )

    def test_badWhen(self):
        self.assertConfigError(
            """
            [[ae]]
            title = "GATEWAY"
            [[ae.forward]]
            to = "PACS"
            when = "sometimes"
            """
            + self.PEER,
            5,
            "ae[0].forward[0].when",
            "expected one of end-of-study, reception",
        )

    def test_badMatchKeyword(self):
        self.assertConfigError(
            """
            [[ae]]
            title = "GATEWAY"
            [[ae.forward]]
            to = "PACS"
            match = { Stationname = "CT*" }
            """
            + self.PEER,
            5,
            "ae[0].forward[0].match.Stationname",
            "not a keyword of the DICOM data dictionary",
        )

    def test_routerModeNeedsARoute(self):
        self.assertConfigError(
            """
            [[ae]]
            title = "GATEWAY"
            [ae.storage]
            keep = "until-forwarded"
            """,
            4,
            "ae[0].storage.keep",
            "needs at least one [[ae.forward]] route",
        )

    def test_asyncOpsDefault(self):
        """
        Forwarding proposes no asynchronous operations window unless told.
        """
        config = self.read("[forwarding]\nretry-first = 2\n")
        self.assertEqual(config.forwarding.asynchronousOperations, 1)

    def test_badAsyncOps(self):
        self.assertConfigError("[forwarding]\nasync-ops = 0\n", 2, "forwarding.async-ops", "must be 1 (no window) to 65535, not 0")
        self.assertConfigError("[forwarding]\nasync-ops = 65536\n", 2, "forwarding.async-ops", "1 (no window) to 65535")
        self.assertConfigError('[forwarding]\nasync-ops = "8"\n', 2, "forwarding.async-ops", "expected an integer")

    def test_retryMaxBelowFirst(self):
        self.assertConfigError(
            """
            [forwarding]
            retry-first = 60
            retry-max = 10
            """,
            3,
            "forwarding.retry-max",
            "must not be less than retry-first",
        )


class ForwardOptionTests(unittest.TestCase):
    """
    C{twistd dicomd --forward AETITLE@HOST:PORT}.
    """

    def test_forward(self):
        """
        Each C{--forward} adds a peer and a route taking everything the
        default AE receives.
        """
        options = tap.Options()
        options.parseOptions(["--forward", "PACS@pacs.example.org:104", "--forward", "AI@[::1]:11112"])
        config = options.overrides(options["base"])
        self.assertEqual([(p.title, p.host, p.port) for p in config.peers], [("PACS", "pacs.example.org", 104), ("AI", "::1", 11112)])
        self.assertEqual(config.entities[0].routes, (Route("PACS"), Route("AI")))

    def test_badForward(self):
        for value in ["PACS", "PACS@host", "@host:104", "PACS@host:0", "PACS@:104", "A_TITLE_LONGER_THAN_16@h:1"]:
            error = self.assertRaises(usage.UsageError, tap.Options().opt_forward, value)
            self.assertIn("--forward takes AETITLE@HOST:PORT", str(error))
