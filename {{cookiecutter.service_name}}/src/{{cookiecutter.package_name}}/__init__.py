# Team-owned: {{ cookiecutter.owner }} edits this file; template updates (cruft update) skip it.
"""{{ cookiecutter.description }}"""

__version__ = "{{ cookiecutter.version }}"
