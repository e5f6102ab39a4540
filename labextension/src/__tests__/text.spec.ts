import { unavailableReason } from '../flavorCards';
import { detailText, durationText, jobChoiceLabel, ranksText } from '../jobText';
import { isAtBottom, logStateText, rankChoices } from '../logText';
import { tickLabel, TimelineSection, timelineKey, timelineSpans } from '../timeline';
import { FLAVORS, makeJob } from './jobs';

describe('jobs in words', () => {
  it('writes durations for people', () => {
    expect(durationText(5)).toBe('5 s');
    expect(durationText(65)).toBe('1 min 5 s');
    expect(durationText(120)).toBe('2 min');
    expect(durationText(3600 + 180)).toBe('1 h 3 min');
    expect(durationText(-3)).toBe('0 s');
  });

  it('writes how a job is spread', () => {
    expect(ranksText(makeJob({ nodes: 2, procs_per_node: 4 }))).toBe('2 nodes × 4 ranks');
    expect(ranksText(makeJob({ nodes: 1, procs_per_node: 1 }))).toBe('1 node × 1 rank');
  });

  it("gives a queued job's position and ETA, a finished job's runtime and exit code", () => {
    const queued = makeJob({ state: 'queued', started: null, position: 2, eta: 1100 });
    expect(detailText(queued, 1000)).toBe('position 2 · ETA in 1 min 40 s');
    const failed = makeJob({ state: 'failed', started: 1010, finished: 1070, exit_code: 3 });
    expect(detailText(failed, 2000)).toBe('ran 1 min · exit 3');
    expect(detailText(makeJob({ started: 1010 }), 1015)).toBe('running for 5 s');
  });

  it('labels jobs to choose from uniquely, by id', () => {
    expect(jobChoiceLabel(makeJob())).toBe('train · running · h100x2 · 0123456789ab');
    expect(jobChoiceLabel(makeJob({ name: '' }))).toBe('running · h100x2 · 0123456789ab');
  });
});

describe('flavor cards', () => {
  const [cpu] = FLAVORS.flavors;
  const reason = (available: boolean, kernels_available: boolean, entitled = true) =>
    unavailableReason({
      ...cpu,
      entitled,
      availability: { ...cpu.availability, available, kernels_available }
    });

  it('say what waits: nothing, jobs only (Kueue quota), or kernels and jobs', () => {
    expect(reason(true, true)).toBeNull();
    expect(reason(false, true)).toBe('Kernels can start, but new jobs wait in the queue for quota');
    expect(reason(false, false)).toBe(
      'Unavailable now: no room for a kernel, and new jobs wait in the queue'
    );
    expect(reason(true, true, false)).toBe('Not entitled: ask an administrator for access');
  });
});

describe('the log viewer', () => {
  it('offers all ranks, then each rank of every node', () => {
    const choices = rankChoices(makeJob({ nodes: 2, procs_per_node: 2 }));
    expect(choices.map(c => c.label)).toEqual([
      'All ranks',
      'Rank 0',
      'Rank 1',
      'Rank 2',
      'Rank 3'
    ]);
    expect(choices[0].value).toBe('');
  });

  it('follows only while the reader is at the end of the log', () => {
    expect(isAtBottom(900, 100, 1000)).toBe(true);
    expect(isAtBottom(880, 100, 1000)).toBe(true); // within the slack
    expect(isAtBottom(500, 100, 1000)).toBe(false);
  });

  it('says why a job waits, how long it runs, and how it ended', () => {
    const queued = makeJob({
      state: 'queued',
      started: null,
      position: 1,
      reason: 'waiting for 1 CPUs, 0 free'
    });
    expect(logStateText(queued)).toBe(
      'Queued (position 1): waiting for 1 CPUs, 0 free. The log starts when the ranks do.'
    );
    expect(logStateText(makeJob(), 1070)).toBe('Running for 1 min: following the log.');
    const done = makeJob({ state: 'succeeded', finished: 1014, exit_code: 0 });
    expect(logStateText(done)).toBe(
      'Job succeeded · exit code 0 · ran 4 s. The log is complete.'
    );
    expect(logStateText(makeJob({ state: 'cancelled', started: null, finished: 1001 }))).toBe(
      'Job cancelled. The log is complete.'
    );
  });
});

describe('the queue timeline', () => {
  it('keeps the jobs of the last hour, oldest first', () => {
    const now = 10_000;
    const old = makeJob({ id: 'a', created: 1000, started: 1000, finished: 2000 });
    const recent = makeJob({ id: 'b', created: 9000, started: null, finished: null });
    const earlier = makeJob({ id: 'c', created: 7000, started: 7100, finished: null });
    expect(timelineSpans([old, recent, earlier], now).map(s => s.job.id)).toEqual(['c', 'b']);
  });

  it('redraws only when the picture would change', () => {
    const section = new TimelineSection();
    const jobs = [makeJob({ flavor: 'cpu', created: 9000, started: 9010 })];
    section.render(FLAVORS, jobs, 9100);
    section.render(FLAVORS, [...jobs], 9110); // same data, same minute
    expect(section.draws).toBe(1);
    section.render(FLAVORS, [makeJob({ ...jobs[0], state: 'succeeded', finished: 9120 })], 9120);
    expect(section.draws).toBe(2);
    section.render(FLAVORS, [makeJob({ ...jobs[0], state: 'succeeded', finished: 9120 })], 9190);
    expect(section.draws).toBe(3); // a new minute: bars and the axis move
    expect(timelineKey(['cpu'], jobs, 9100)).not.toEqual(timelineKey(['cpu'], jobs, 9160));
  });

  it('looks back 6 or 24 hours when asked, with its grid in hours', () => {
    const now = Date.now() / 1000;
    const section = new TimelineSection();
    const yesterday = makeJob({ flavor: 'cpu', created: now - 20 * 3600, started: now - 20 * 3600 });
    const done = { ...yesterday, state: 'succeeded' as const, finished: now - 19 * 3600 };
    section.render(FLAVORS, [done], now);
    const status = section.node.querySelector('p') as HTMLElement;
    expect([status.hidden, status.textContent]).toEqual([false, 'No jobs in the last hour.']);
    const span = section.node.querySelector('select[aria-label="Time span"]') as HTMLSelectElement;
    expect(Array.from(span.options, o => o.textContent)).toEqual([
      'last hour',
      'last 6 hours',
      'last 24 hours'
    ]);
    span.value = '1';
    span.dispatchEvent(new Event('change'));
    expect(status.textContent).toBe('No jobs in the last 6 hours.');
    span.value = '2';
    span.dispatchEvent(new Event('change'));
    expect(status.hidden).toBe(true);
    const axis = Array.from(section.node.querySelectorAll('text'), t => t.textContent);
    expect(axis).toEqual(['-24h', '-18h', '-12h', '-6h', 'now']);
    expect(section.node.querySelectorAll('g.jp-mlinfra-Timeline-bar')).toHaveLength(1);
    expect([tickLabel(2700), tickLabel(3600), tickLabel(7200)]).toEqual(['-45m', '-60m', '-2h']);
  });

  it('says when older jobs of the span are not drawn', () => {
    const now = 100_000;
    const section = new TimelineSection();
    const partial = () => section.node.querySelectorAll('p')[1] as HTMLElement;
    const recent = [makeJob({ flavor: 'cpu', created: now - 600, started: now - 590 })];
    section.render(FLAVORS, recent, now, false); // a full page, all of it within the hour
    expect([partial().hidden, partial().textContent]).toEqual([
      false,
      'Only the 1 most recent jobs are drawn: older ones of the last hour are left out.'
    ]);
    section.render(FLAVORS, recent, now, true);
    expect(partial().hidden).toBe(true);
    const older = [...recent, makeJob({ id: 'old', flavor: 'cpu', created: now - 7200 })];
    section.render(FLAVORS, older, now, false); // the page reaches back before the span
    expect(partial().hidden).toBe(true);
  });
});
