/** A Requester over JupyterLab's ServerConnection: base URL, token and XSRF handled there. */

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import type { Requester } from './api';

export const API_ROOT = 'nbtasks/api';

export function serverRequester(settings: ServerConnection.ISettings = ServerConnection.makeSettings()): Requester {
  return (path, init = {}) => {
    const cut = path.indexOf('?');
    const route = cut < 0 ? path : path.slice(0, cut);
    const query = cut < 0 ? '' : path.slice(cut);
    const url = URLExt.join(settings.baseUrl, API_ROOT, route) + query;
    return ServerConnection.makeRequest(url, init, settings);
  };
}
