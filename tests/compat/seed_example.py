# The "Example API application" of the original's documentation
# (../shared/seeds/002_*.txt), verbatim: run it with
#     python -m qcgpj_async.compat seed_example.py
# The waits are the ones the seed's text names (its code blocks for them were
# lost in the copy): wait4 on our job, then wait4all.
from qcg.pilotjob.api.manager import LocalManager

manager = LocalManager()

print('available resources: ', manager.resources())

from qcg.pilotjob.api.job import Jobs
jobs = Jobs().add(script='echo "job ${it} executed at `date` @ `hostname`"', stdout='job.out.${it}', iteration=4)
job_ids = manager.submit(jobs)
print('submited jobs: ', str(job_ids))

job_status = manager.status(job_ids)
print('job status: ', job_status)

manager.wait4(job_ids)

manager.wait4all()

job_info = manager.info(job_ids)
print('job detailed information: ', job_info)

manager.finish()
