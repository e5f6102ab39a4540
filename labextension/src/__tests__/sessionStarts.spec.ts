import { ISessionContext } from '@jupyterlab/apputils';

import { Signal } from '@lumino/signaling';

import { sessionStarted, specBeingStarted } from '../sessionStarts';

/** What `specBeingStarted` reads of a notebook's session context. */
function context(options: {
  status: string;
  kernel?: string;
  displayName?: string;
  preference?: { name?: string; id?: string };
}): ISessionContext {
  const kernelspecs = {
    'mlinfra-pytorch': { name: 'mlinfra-pytorch', display_name: 'PyTorch (CPU)' },
    'mlinfra-pytorch--a100x1': {
      name: 'mlinfra-pytorch--a100x1',
      display_name: 'PyTorch · 1 × A100'
    }
  };
  return {
    kernelDisplayStatus: options.status,
    kernelDisplayName: options.displayName ?? '',
    kernelPreference: options.preference ?? {},
    session: options.kernel ? { kernel: { name: options.kernel } } : null,
    specsManager: { specs: { default: 'python3', kernelspecs } }
  } as unknown as ISessionContext;
}

describe('specBeingStarted', () => {
  it("is a notebook's first kernel, unless it joins one already running", () => {
    const first = { name: 'mlinfra-pytorch--a100x1' };
    expect(specBeingStarted(context({ status: 'initializing', preference: first }))).toBe(
      'mlinfra-pytorch--a100x1'
    );
    const join = { ...first, id: 'abc' };
    expect(specBeingStarted(context({ status: 'starting', preference: join }))).toBeNull();
    expect(specBeingStarted(context({ status: 'idle', preference: first }))).toBeNull();
  });

  it('is the new kernelspec while "Change Kernel" waits, not a restart of the same one', () => {
    const change = { status: 'starting', kernel: 'mlinfra-pytorch' };
    expect(specBeingStarted(context({ ...change, displayName: 'PyTorch · 1 × A100' }))).toBe(
      'mlinfra-pytorch--a100x1'
    );
    expect(specBeingStarted(context({ ...change, displayName: 'PyTorch (CPU)' }))).toBeNull();
    expect(specBeingStarted(context({ ...change, displayName: 'Python 3' }))).toBeNull();
  });
});

describe('sessionStarted', () => {
  /** A session context whose kernel and status a test changes, as JupyterLab's would. */
  function changing(kernel: { id: string; name: string }) {
    const context = {
      kernelDisplayStatus: 'starting',
      isDisposed: false,
      session: { kernel },
      kernelChanged: new Signal<unknown, unknown>({}),
      statusChanged: new Signal<unknown, unknown>({}),
      disposed: new Signal<unknown, unknown>({})
    };
    const change = (next: { id: string; name: string }): void => {
      context.session = { kernel: next };
      context.kernelChanged.emit(undefined);
    };
    return { context: context as unknown as ISessionContext, change };
  }

  it('ends on a new kernel of the spec, not on the old one named alike', async () => {
    const { context, change } = changing({ id: 'old', name: 'mlinfra-pytorch--cpu' });
    let ended = false;
    const started = sessionStarted(context, 'mlinfra-pytorch--cpu').then(() => {
      ended = true;
    });
    (context.statusChanged as Signal<unknown, unknown>).emit(undefined);
    await Promise.resolve();
    expect(ended).toBe(false);
    change({ id: 'new', name: 'mlinfra-pytorch--cpu' });
    await started;
    expect(ended).toBe(true);
  });
});
