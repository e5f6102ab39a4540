/**
 * The volumes a kernel or job gets, in words, for the Start section: where the user's files
 * and datasets are inside a pod.
 */
import { IVolume } from './tokens';

/** One volume: `imagenet at /data/imagenet (read-only, claim imagenet)`. */
export function volumeText(volume: IVolume): string {
  const how = [volume.read_only ? 'read-only' : '', volume.kind === 'folder' ? '' : volume.source]
    .filter(part => part !== '')
    .join(', ');
  return `${volume.name} at ${volume.mount_path}` + (how ? ` (${how})` : '');
}

/** Every volume of an environment and a flavor, one line, or '' when there is none. */
export function volumesText(volumes: IVolume[]): string {
  return volumes.length ? `Files: ${volumes.map(volumeText).join(' · ')}` : '';
}
