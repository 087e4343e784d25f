"""Project hygiene: scanning trees and git history, the doctor's checklist, migrations,
and running child processes with granted secrets and redacted output."""
