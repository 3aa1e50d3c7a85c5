"""What our two task packages (``vsr_tasks``, ``whatsup_tasks``) share: a task whose documents we read from local
files and that answers lmms-eval's chat and simple models alike (``task``), and strict image reading (``images``);
and what every command above them shares: lmms-eval's task index, built once per process (``manager``)."""
