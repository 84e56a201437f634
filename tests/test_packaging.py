"""
The installed distribution: what C{pip install .} puts on a machine.

tests/run.sh installs dicomd into a virtual environment before running the
suite; these tests read that installation's metadata, so they prove the
wheel carries the twistd plugin (which lives outside the C{dicomd} package,
in C{twisted/plugins/} without an C{__init__.py}) and the console script.
"""

from importlib import metadata

from twisted.trial.unittest import SynchronousTestCase


class DistributionTests(SynchronousTestCase):
    """
    Tests of the installed C{dicomd} distribution.
    """

    def files(self):
        try:
            files = metadata.files("dicomd")
        except metadata.PackageNotFoundError:
            self.fail("dicomd is not installed: run the suite with sh tests/run.sh")
        return {str(path) for path in files or ()}

    def test_pluginInstalled(self):
        """
        The wheel installs twisted/plugins/dicomd_plugin.py, so twistd finds
        the plugin.
        """
        self.assertIn("twisted/plugins/dicomd_plugin.py", self.files())

    def test_endpointPluginInstalled(self):
        """
        The wheel installs twisted/plugins/dicomd_endpoints.py, which
        registers the C{dicomtls:} endpoint prefix.
        """
        self.assertIn("twisted/plugins/dicomd_endpoints.py", self.files())

    def test_noTwistedPackageInit(self):
        """
        The wheel does not install a twisted/__init__.py or
        twisted/plugins/__init__.py, which would shadow Twisted's own.
        """
        files = self.files()
        self.assertNotIn("twisted/__init__.py", files)
        self.assertNotIn("twisted/plugins/__init__.py", files)

    def test_examplesInstalled(self):
        """
        The wheel carries the example configurations that C{dicomd
        example-config} prints (links to etc/ in the checkout).
        """
        files = self.files()
        for name in ("dicomd.toml", "dcmqrscp.cfg", "storescp-asconfig.cfg", "dicomd.service"):
            self.assertIn("dicomd/examples/" + name, files)

    def test_consoleScript(self):
        """
        The distribution declares the C{dicomd} console script.
        """
        scripts = [entry for entry in metadata.entry_points(group="console_scripts") if entry.name == "dicomd"]
        self.assertEqual([entry.value for entry in scripts], ["dicomd.__main__:main"])
