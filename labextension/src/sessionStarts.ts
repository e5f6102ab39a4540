/**
 * Kernel starts that notebooks and consoles run themselves (a Launcher card, a kernel chosen
 * for a new notebook, "Change Kernel"): JupyterLab asks `POST /api/sessions` (or `PATCH` to
 * change), which answers only once the kernel is ready, so while it waits this follows the
 * start through `KernelStartProgress` as for a start from the sidebar. Only kernels of the
 * server's generated kernelspecs are followed; on failure JupyterLab's own "Error Starting
 * Kernel" dialog shows the server's reason, so the progress notification just closes.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { ISessionContext } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { specStart } from './kernelStarts';
import { KernelStartProgress } from './startProgress';

/** How often a followed start looks whether its session settled (ms). */
const SETTLE_CHECK = 500;

function starting(context: ISessionContext): boolean {
  const status = context.kernelDisplayStatus; // 'initializing' until a new session answers
  return status === 'initializing' || status === 'starting';
}

/**
 * The kernelspec `context` is starting a kernel of, or null: its first kernel (it has none
 * yet), or another one (JupyterLab's "Change Kernel": the old kernel stays until the new one
 * is ready, and the context's display name already is the new spec's). A restart keeps the
 * kernel's own spec, and a preference with an id joins a kernel already running (one started
 * from the panel): neither is a start to follow.
 */
export function specBeingStarted(context: ISessionContext): string | null {
  if (!starting(context)) {
    return null;
  }
  const kernel = context.session?.kernel;
  const preference = context.kernelPreference;
  if (!kernel) {
    return preference.id ? null : (preference.name ?? null);
  }
  const specs = context.specsManager.specs?.kernelspecs ?? {};
  if (specs[kernel.name]?.display_name === context.kernelDisplayName) {
    return null;
  }
  const spec = Object.values(specs).find(s => s?.display_name === context.kernelDisplayName);
  return spec?.name ?? null;
}

/**
 * Settles when `context`'s start of a `spec` kernel ends: resolves once its kernel is another
 * one than it had when the start began, of `spec`; rejects when it stops starting without one
 * (JupyterLab's own dialog says why). The kernel it had may carry `spec`'s name already (a
 * kernel moved to another flavor keeps its id and, in a session model read at the wrong moment,
 * a name): a name alone once ended the progress while the new kernel still pulled its image.
 */
export function sessionStarted(context: ISessionContext, spec: string): Promise<void> {
  const before = context.session?.kernel?.id;
  return new Promise((resolve, reject) => {
    const settle = (error: Error | null): void => {
      window.clearInterval(timer);
      context.kernelChanged.disconnect(check);
      context.statusChanged.disconnect(check);
      context.disposed.disconnect(check);
      if (error === null) {
        resolve();
      } else {
        reject(error);
      }
    };
    const check = (): void => {
      const kernel = context.session?.kernel;
      if (kernel?.name === spec && kernel.id !== before) {
        settle(null);
      } else if (context.isDisposed) {
        settle(new Error('closed before its kernel started'));
      } else if (!starting(context)) {
        settle(new Error('the kernel did not start'));
      }
    };
    // a failed "Change Kernel" emits no signal once it gives up: look now and then as well
    const timer = window.setInterval(check, SETTLE_CHECK);
    context.kernelChanged.connect(check);
    context.statusChanged.connect(check);
    context.disposed.connect(check);
  });
}

/** Follow the kernel starts of `context` that run a generated kernelspec. */
function follow(context: ISessionContext, progress: KernelStartProgress): void {
  let following = false;
  const check = (): void => {
    const spec = following ? null : specBeingStarted(context);
    const asked = spec === null ? null : specStart(context.specsManager.specs?.kernelspecs[spec]);
    if (spec === null || asked === null) {
      return;
    }
    following = true;
    void progress
      .track(asked.flavor, asked.environment, () => sessionStarted(context, spec), {
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
