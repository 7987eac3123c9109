"""Pure builders of the Jobs that migrate and plan: plain dicts, no API client, no database.

:mod:`~lockstep.jobs.naming` names and labels a run; :mod:`~lockstep.jobs.job_spec` builds the
Job and its migrate pod; :mod:`~lockstep.jobs.containers` the containers every pod is made of;
:mod:`~lockstep.jobs.plan_pod` the read-only plan pod; :mod:`~lockstep.jobs.rehearsal` the
shadow rehearsal of tools in an image. The commands they run come from :mod:`lockstep.contract`.
"""
