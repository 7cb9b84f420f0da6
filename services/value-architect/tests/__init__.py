# Team-owned: team-value edits this file; template updates (cruft update) skip it.
