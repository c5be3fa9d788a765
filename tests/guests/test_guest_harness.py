"""The guest harness's own logic, without QEMU: the initramfs archive format and the
console's command framing (driven here against the host's /bin/sh)."""

import os
import subprocess
import tempfile
import unittest

import guest_image
from guest_console import CommandFailed, GuestConsole


class CpioArchiveTest(unittest.TestCase):
    def test_cpio_lists_what_was_written(self):
        writer = guest_image._CpioWriter()
        writer.directory("bin")
        writer.file("bin/tool", b"#!/bin/sh\necho odd-sized\n", 0o755)
        writer.symlink("bin/sh", "busybox")
        writer.char_device("dev/console", 5, 1)
        archive = writer.finish()
        self.assertEqual(len(archive) % 4, 0)
        listing = subprocess.run(["cpio", "-itv", "--quiet"], input=archive,
                                 capture_output=True, check=True).stdout.decode()
        lines = listing.splitlines()
        self.assertEqual([line.split()[-1] if "->" not in line else line.split()[-3]
                          for line in lines], ["bin", "bin/tool", "bin/sh", "dev/console"])
        self.assertTrue(lines[1].startswith("-rwxr-xr-x"))
        self.assertIn("-> busybox", lines[2])
        self.assertTrue(lines[3].startswith("crw-------"))
        self.assertIn("5,", lines[3])

    def test_file_contents_survive(self):
        writer = guest_image._CpioWriter()
        writer.file("a", b"x" * 5)
        writer.file("b", b"yyy")
        with tempfile.TemporaryDirectory() as d:
            subprocess.run(["cpio", "-id", "--quiet"], input=writer.finish(), cwd=d,
                           check=True)
            with open(os.path.join(d, "a"), "rb") as f:
                self.assertEqual(f.read(), b"x" * 5)
            with open(os.path.join(d, "b"), "rb") as f:
                self.assertEqual(f.read(), b"yyy")


class GuestConsoleTest(unittest.TestCase):
    def setUp(self):
        self.shell = subprocess.Popen(["/bin/sh"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.log = tempfile.NamedTemporaryFile(suffix=".log")
        self.console = GuestConsole(self.shell.stdout, self.shell.stdin, self.log.name)

    def tearDown(self):
        self.shell.stdin.close()
        self.shell.wait()
        self.console.close()
        self.log.close()

    def test_output_is_framed(self):
        self.console.sync(timeout=5)
        self.assertEqual(self.console.run("echo one; echo two"), "one\ntwo\n")
        self.assertEqual(self.console.run("true"), "")

    def test_stderr_and_status(self):
        with self.assertRaises(CommandFailed) as raised:
            self.console.run("echo oops >&2; exit_status() { return 3; }; exit_status")
        self.assertEqual(raised.exception.status, 3)
        self.assertEqual(raised.exception.output, "oops\n")
        self.assertEqual(self.console.run("false", check=False), "")

    def test_marker_text_in_output_does_not_end_a_command(self):
        out = self.console.run("echo VHU-END-1 0; echo after")
        self.assertEqual(out, "VHU-END-1 0\nafter\n")

    def test_log_keeps_everything(self):
        self.console.run("echo logged-line")
        with open(self.log.name) as f:
            self.assertIn("logged-line", f.read())


if __name__ == "__main__":
    unittest.main()
