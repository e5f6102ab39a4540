import { JobsSection } from '../jobList';
import { makeJob } from './jobs';

describe('JobsSection', () => {
  const ignore = (): void => undefined;
  const section = new JobsSection(
    { logs: ignore, cancel: ignore, retry: ignore, copyId: ignore },
    { states: ignore, allUsers: ignore }
  );
  const row = (id: string): HTMLElement =>
    section.node.querySelector(`li[data-job-id="${id}"]`) as HTMLElement;
  const shown = (node: HTMLElement, className: string): string[] =>
    Array.from(node.querySelectorAll<HTMLElement>(className))
      .filter(n => !n.hidden)
      .map(n => n.textContent ?? '');

  it('says a state once: a reason that repeats the badge is left out', () => {
    section.render(
      [
        makeJob({ id: 'aaaaaaaaaaaa', state: 'cancelled', reason: 'cancelled', finished: 1020 }),
        makeJob({ id: 'bbbbbbbbbbbb', state: 'cancelled', reason: 'cancelled by bob' })
      ],
      true
    );
    expect(shown(row('aaaaaaaaaaaa'), '.jp-mlinfra-JobRow-reason')).toEqual([]);
    expect(shown(row('bbbbbbbbbbbb'), '.jp-mlinfra-JobRow-reason')).toEqual(['cancelled by bob']);
  });

  it('puts the id beside the name, and flavor and ranks on the line under them', () => {
    section.render([makeJob()], true);
    const head = row('0123456789ab').querySelector('.jp-mlinfra-JobRow-head') as HTMLElement;
    expect(Array.from(head.children, n => n.textContent)).toEqual([
      'train',
      '0123456789ab',
      'running'
    ]);
    expect(shown(row('0123456789ab'), '.jp-mlinfra-JobRow-meta > span')).toEqual([
      'h100x2',
      '1 node × 2 ranks'
    ]);
  });
});
