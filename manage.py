#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "farm.settings")
    # Beside a running `make run`: its services' URLs and secret key, for any variable not set here.
    from farm.devstack.config import use_stack_settings

    use_stack_settings(os.environ)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
