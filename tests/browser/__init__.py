"""Real-browser (JupyterLab + headless Chromium) tests of the course widgets."""
