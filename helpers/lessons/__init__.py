"""Lesson glue: what notebooks need beyond the techniques (the capstone's runs, ledgers, tables
and decision guide; figures and widgets; progress bars). Lessons import techniques and core;
nothing below imports from here."""
