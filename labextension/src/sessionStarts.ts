/**
 * Kernel starts that notebooks and consoles run themselves (a Launcher card, a kernel chosen
 * for a new notebook): JupyterLab asks `POST /api/sessions`, which answers only once the
 * kernel is ready, so while it waits this follows the start through `KernelStartProgress` as
 * for a start from the sidebar. Only kernels of the server's generated kernelspecs are
 * followed; on failure JupyterLab's own "Error Starting Kernel" dialog shows the server's
 * reason, so the progress notification just closes.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { ISessionContext } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { specStart } from './kernelStarts';
import { KernelStartProgress } from './startProgress';

/** Whether a session context is starting its first kernel (it has none yet). */
function startingFirstKernel(context: ISessionContext): boolean {
  const status = context.kernelDisplayStatus; // 'initializing' until the new session answers
  return (status === 'initializing' || status === 'starting') && !context.session?.kernel;
}

/** Settles when `context`'s pending kernel start ends: resolves once it has a kernel. */
export function sessionStarted(context: ISessionContext): Promise<void> {
  return new Promise((resolve, reject) => {
    const settle = (error: Error | null): void => {
      context.kernelChanged.disconnect(onKernel);
      context.statusChanged.disconnect(onStatus);
      context.disposed.disconnect(onDisposed);
      if (error === null) {
        resolve();
      } else {
        reject(error);
      }
    };
    const onKernel = (_: unknown, change: { newValue: unknown }): void => {
      if (change.newValue) {
        settle(null);
      }
    };
    const onStatus = (_: unknown, status: string): void => {
      if (status !== 'starting' && !context.session?.kernel) {
        settle(new Error('the kernel did not start'));
      }
    };
    const onDisposed = (): void => settle(new Error('closed before its kernel started'));
    context.kernelChanged.connect(onKernel);
    context.statusChanged.connect(onStatus);
    context.disposed.connect(onDisposed);
  });
}

/** Follow the first kernel start of `context` when it runs a generated kernelspec. */
function follow(context: ISessionContext, progress: KernelStartProgress): void {
  let following = false;
  const check = (): void => {
    const preference = context.kernelPreference;
    const asked = specStart(preference.name ?? '');
    // a preference with an id joins a kernel that is already running (started from the panel)
    if (following || asked === null || preference.id || !startingFirstKernel(context)) {
      return;
    }
    following = true;
    void progress
      .track(asked.flavor, asked.environment, () => sessionStarted(context), {
        quietFailure: true
      })
      .catch(() => undefined)
      .then(() => {
        following = false;
      });
  };
  context.statusChanged.connect(check);
  check();
}

/** Follow the kernel starts of every notebook and console the shell shows. */
export function watchSessionStarts(app: JupyterFrontEnd, progress: KernelStartProgress): void {
  const seen = new WeakSet<ISessionContext>();
  const watch = (widget: Widget | null): void => {
    const context = (widget as { sessionContext?: ISessionContext } | null)?.sessionContext;
    if (context && !seen.has(context)) {
      seen.add(context);
      follow(context, progress);
    }
  };
  for (const widget of app.shell.widgets('main')) {
    watch(widget);
  }
  app.shell.currentChanged?.connect((_, change) => watch(change.newValue));
}
