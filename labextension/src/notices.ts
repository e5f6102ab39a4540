/**
 * Notices the server sends through a notebook's kernel, shown as JupyterLab notifications.
 *
 * The server has no channel of its own into an open notebook, so it asks the kernel to print
 * a line starting with `[mlinfra]` (for example: "this idle kernel will be shut down in 60 s
 * to release its accelerators"). Such a line belongs to no cell, so the notebook would not
 * show it; this plugin does, wherever the user is looking.
 */
import { Notification } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { KernelMessage } from '@jupyterlab/services';

/** The prefix of every line the server wants a person to see. */
export const NOTICE_PREFIX = '[mlinfra]';

/** The notice in an iopub message, if it carries one. */
export function noticeOf(msg: KernelMessage.IMessage): string | null {
  if (msg.channel !== 'iopub' || msg.header.msg_type !== 'stream') {
    return null;
  }
  const text = (msg as KernelMessage.IStreamMsg).content.text.trim();
  return text.startsWith(NOTICE_PREFIX) ? text : null;
}

/** Show the notices of every notebook's kernel, once each. */
export function watchNotices(tracker: INotebookTracker): void {
  const watch = (panel: NotebookPanel): void => {
    let last = '';
    panel.sessionContext.iopubMessage.connect((_, msg) => {
      const notice = noticeOf(msg);
      if (notice && notice !== last) {
        last = notice;
        Notification.warning(notice.slice(NOTICE_PREFIX.length).trim(), {
          autoClose: false
        });
      }
    });
  };
  tracker.forEach(watch);
  tracker.widgetAdded.connect((_, panel) => watch(panel));
}
